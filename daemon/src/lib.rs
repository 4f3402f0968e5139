//! The netclaw daemon (public listener, operator listener); see issue tracker for status.
