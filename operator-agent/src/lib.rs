//! The netclaw operator agent.
