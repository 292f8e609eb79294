//! The ranks of a data-parallel job across processes, and what they exchange: a reduction in a
//! fixed order, a gather to rank 0, a broadcast from it. `Mpi` carries them over MPI (the
//! `mpi` build feature); [`launched_ranks`] tells, without MPI, whether a launcher started this
//! process as one of several.
//!
//! The reduction is written out rather than left to `MPI_Allreduce`, whose bracketing changes
//! with the algorithm the MPI picks (and so do the bits): each rank receives everyone's copy of
//! its 1/N slice (`all_to_all`), sums them in rank order 0…N−1 ([`crate::shares::add_in_order`]),
//! and every rank gathers every slice (`all_gather`). It moves 2·(N−1)/N·P·4 bytes per rank, as a
//! ring all-reduce does, and gives the same bits under every MPI and algorithm.

use crate::error::{Error, Result};
use std::rc::Rc;

/// The processes of a data-parallel job, shared by the run and its engine.
#[derive(Clone)]
pub struct Job(pub Rc<dyn Collective>);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rank {} of {}", self.0.rank(), self.0.size())
    }
}

impl std::ops::Deref for Job {
    type Target = dyn Collective;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// The processes of a data-parallel job.
pub trait Collective {
    /// This process's rank, 0…N−1.
    fn rank(&self) -> usize;
    /// N, the processes.
    fn size(&self) -> usize;
    /// This process's rank among the job's processes on its machine (it picks the adapter).
    fn local_rank(&self) -> usize;
    /// The element-wise sum of every rank's `values` (all of one length) in rank order, divided
    /// by `divisor`, in place: the same bits on every rank.
    fn ordered_mean(&self, values: &mut [f32], divisor: usize);
    /// Every rank's `values` (all of one length), in rank order, on rank 0; `None` elsewhere.
    fn gather(&self, values: &[f32]) -> Option<Vec<f32>>;
    /// Rank 0's `values` on every rank.
    fn broadcast(&self, values: &mut [f32]);
    /// Every rank's `word`, in rank order, on every rank.
    fn all_words(&self, word: u64) -> Vec<u64>;
    /// Every rank's `bytes` (of any length), in rank order, on rank 0; `None` elsewhere.
    fn gather_bytes(&self, bytes: &[u8]) -> Option<Vec<Vec<u8>>>;
    /// Waits until every rank has come here.
    fn barrier(&self);
    /// Ends every process of the job with `code` (after this rank's error was printed).
    fn abort(&self, code: i32) -> !;
}

/// The processes a launcher (`mpirun`, `mpiexec`) started this one among, read from the variables
/// Open MPI and MPICH's Hydra set; 1 when none.
pub fn launched_ranks() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .filter_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(1)
}

/// The error of a build without MPI started as one of several processes.
pub fn no_mpi_error(ranks: usize) -> Error {
    Error::config(
        format!(
            "this unroll was started as one of {ranks} processes (by mpirun or a similar \
             launcher), but it was built without MPI: the {ranks} copies would each train the \
             whole run on their own and race on one run directory"
        ),
        "build it with MPI: `cargo build --release --features mpi` (needs libopenmpi-dev or \
         libmpich-dev, and libclang-dev); or run it without mpirun",
    )
}

#[cfg(feature = "mpi")]
pub use self::mpi_ranks::Mpi;

#[cfg(feature = "mpi")]
mod mpi_ranks {
    use super::Collective;
    use crate::error::{Error, Result};
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::*;

    /// The job's processes over MPI: initialised by [`Mpi::init`], finalised when dropped.
    pub struct Mpi {
        world: SimpleCommunicator,
        local_rank: usize,
        /// The reduction's buffers, kept from one step to the next: fresh ones of a large model's
        /// size cost page faults on every step.
        scratch: std::cell::RefCell<[Vec<f32>; 3]>,
        // Dropped last: finalises MPI.
        _universe: mpi::environment::Universe,
    }

    impl Mpi {
        /// Initialises MPI (once per process).
        pub fn init() -> Result<Self> {
            let universe = mpi::initialize().ok_or_else(|| {
                Error::config(
                    "MPI was initialised already in this process",
                    "start one data-parallel run per process",
                )
            })?;
            let world = universe.world();
            let local_rank = world.split_shared(world.rank()).rank() as usize;
            Ok(Self {
                world,
                local_rank,
                scratch: Default::default(),
                _universe: universe,
            })
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        fn size(&self) -> usize {
            self.world.size() as usize
        }

        fn local_rank(&self) -> usize {
            self.local_rank
        }

        fn ordered_mean(&self, values: &mut [f32], divisor: usize) {
            let n = self.size();
            // Slices of s values, the last padded with zeros.
            let s = values.len().div_ceil(n).max(1);
            let mut scratch = self.scratch.borrow_mut();
            let [send, mine, slice] = &mut *scratch;
            send.clear();
            send.extend_from_slice(values);
            send.resize(s * n, 0.0);
            mine.resize(s * n, 0.0);
            self.world.all_to_all_into(&send[..], &mut mine[..]);
            slice.clear();
            slice.extend_from_slice(&mine[..s]);
            crate::shares::add_in_order(slice, mine.chunks(s).skip(1), divisor);
            // Every rank's slice, in rank order, into the send buffer (no longer needed).
            self.world.all_gather_into(&slice[..], &mut send[..]);
            values.copy_from_slice(&send[..values.len()]);
        }

        fn gather(&self, values: &[f32]) -> Option<Vec<f32>> {
            let root = self.world.process_at_rank(0);
            if self.rank() == 0 {
                let mut all = vec![0.0f32; values.len() * self.size()];
                root.gather_into_root(values, &mut all[..]);
                Some(all)
            } else {
                root.gather_into(values);
                None
            }
        }

        fn broadcast(&self, values: &mut [f32]) {
            self.world.process_at_rank(0).broadcast_into(values);
        }

        fn all_words(&self, word: u64) -> Vec<u64> {
            let mut all = vec![0u64; self.size()];
            self.world.all_gather_into(&word, &mut all[..]);
            all
        }

        fn gather_bytes(&self, bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
            let lens = self.all_words(bytes.len() as u64);
            let root = self.world.process_at_rank(0);
            if self.rank() != 0 {
                root.gather_varcount_into(bytes);
                return None;
            }
            let counts: Vec<mpi::Count> = lens.iter().map(|&l| l as mpi::Count).collect();
            let displs: Vec<mpi::Count> = counts
                .iter()
                .scan(0, |at, &c| {
                    let start = *at;
                    *at += c;
                    Some(start)
                })
                .collect();
            let mut all = vec![0u8; lens.iter().sum::<u64>() as usize];
            {
                let mut parts = mpi::datatype::PartitionMut::new(&mut all[..], counts, &displs[..]);
                root.gather_varcount_into_root(bytes, &mut parts);
            }
            let mut at = 0;
            Some(
                lens.iter()
                    .map(|&l| {
                        let part = all[at..at + l as usize].to_vec();
                        at += l as usize;
                        part
                    })
                    .collect(),
            )
        }

        fn barrier(&self) {
            self.world.barrier();
        }

        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}

/// The launcher's ranks, checked against this build: an error where a build without MPI was
/// started as one of several processes.
pub fn check_launch() -> Result<usize> {
    let ranks = launched_ranks();
    if ranks > 1 && !cfg!(feature = "mpi") {
        return Err(no_mpi_error(ranks));
    }
    Ok(ranks)
}
