//! The worker: leases chunk tasks, runs the search kernel, stores the result, then acks.
