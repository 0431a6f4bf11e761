//! Packet builders (to be written).
