//! One module per command (or family of commands), as `run` dispatches them.

pub mod admin;
pub mod compile;
pub mod demo;
pub mod engine;
pub mod inspect;
