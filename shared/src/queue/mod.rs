//! Queues: placeholder, being written (see the queue helper's brief).
