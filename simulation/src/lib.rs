//! Network simulation: a simulated libp2p transport with latency, bandwidth, loss and partitions; scenarios, metrics and reports
