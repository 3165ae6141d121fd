//! A node's lifetime: the builder that assembles a node from its parts
//! (for `osmoda run` and for each simulated node alike), the event loop
//! that answers peers and runs the node's timers, and the table of the
//! node's gossip topics.

pub mod builder;
pub mod event_loop;
pub mod topics;
