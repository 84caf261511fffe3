//! Storage back ends of the simulator (being written).
