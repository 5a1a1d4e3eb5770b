//! How many threads the parallel passes use: one function, so the CSV parser, the statistics
//! passes and the tree growers agree.

/// Beyond this many threads the passes are bound by memory bandwidth, not cores.
pub const MAX_THREADS: usize = 16;

/// The threads the CSV parser, the statistics passes and the tree growers use: the machine's
/// parallelism, at most [`MAX_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_THREADS)
}
