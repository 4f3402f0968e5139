//! netclaw end-to-end test support.
