//! The master: takes jobs over TCP, cuts them into chunk tasks, serves leases (embedded backend),
//! aggregates results and reclaims a dead worker's tasks when the collector says so.
