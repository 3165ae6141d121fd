//! How documents and audit heads travel between nodes: pushes of local
//! writes over gossip (`push`), Automerge sync rounds over direct requests
//! (`sync`), neighbour notices and periodic comparison (`anti_entropy`),
//! the strikes that cut off a peer that abuses them (`conduct`), and the
//! bytes of the node's direct messages (`wire`).

pub mod anti_entropy;
pub mod conduct;
pub mod push;
pub mod rates;
pub mod sync;
pub mod wire;
