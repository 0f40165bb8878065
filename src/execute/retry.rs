//! STUB: replaced by the provider work.
