//! End-to-end tests of the three binaries.
