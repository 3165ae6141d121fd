//! A node's lifetime: the builder that assembles a node from its parts
//! (for `osmoda run` and for each simulated node alike) and the event loop
//! that answers peers and runs the node's timers.

pub mod builder;
pub mod event_loop;
