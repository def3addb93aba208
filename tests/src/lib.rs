//! Shared helpers for berth's root and end-to-end tests.
