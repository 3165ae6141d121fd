//! A node's lifetime: the builder that assembles a node from its parts
//! (for `osmoda run` and for each simulated node alike), the event loop
//! that answers peers and runs the node's timers, and `osmoda run` itself.

pub mod builder;
pub mod event_loop;
pub mod run;
