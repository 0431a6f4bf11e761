//! Network-namespace lab (to be written).
