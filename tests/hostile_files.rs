//! Files from strangers: the checkpoint reader (tensors and metadata) and the CSV reader, fed
//! random bytes and mutated valid files, end in a value or a clear error: no panic, no hang, and
//! no single allocation larger than a bound set by the file's size.

use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The system allocator, remembering the largest single allocation since the last reset.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// One measured call at a time (the test harness runs tests on several threads).
static MEASURE: Mutex<()> = Mutex::new(());

/// Runs `f` and returns the largest single allocation it made.
fn largest_allocation(f: impl FnOnce()) -> usize {
    let _one = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    LARGEST.store(0, Ordering::Relaxed);
    f();
    LARGEST.load(Ordering::Relaxed)
}

/// The bound: a few times the file (it is read whole, then converted), plus a little.
fn bound(len: usize) -> usize {
    8 * len + (1 << 20)
}

/// A small valid checkpoint, with optimizer state, hidden state and a vocabulary.
fn valid_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
            .args([
                "train", "--device", "cpu", "--quiet", "--hidden", "6", "--batch", "2",
            ])
            .args([
                "--seq-len",
                "4",
                "--iters",
                "2",
                "--sample-len",
                "0",
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(dir.path().join("model.safetensors")).unwrap()
    })
}

fn temp_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// Loads a checkpoint and uses what a sampler or a resumed run would use; panics only through
/// the asserts of the caller.
fn load(path: &Path) {
    if let Ok(ck) = unroll::checkpoint::Checkpoint::load(path) {
        let _ = ck.params.config.num_params();
        if let Some(v) = &ck.info.vocab {
            let _ = v.decode(&[0]);
        }
    }
}

fn check_file(bytes: &[u8]) {
    let (_dir, path) = temp_file(bytes);
    let largest = largest_allocation(|| load(&path));
    assert!(
        largest <= bound(bytes.len()),
        "a file of {} bytes made an allocation of {largest}",
        bytes.len()
    );
}

/// The header of a safetensors file (after its 8-byte length) as text.
fn header_range(bytes: &[u8]) -> std::ops::Range<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    8..(8 + n).min(bytes.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_are_no_checkpoint(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check_file(&bytes);
    }

    #[test]
    fn flipped_bytes(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = valid_checkpoint().to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        check_file(&bytes);
    }

    #[test]
    fn truncated(at in any::<prop::sample::Index>()) {
        let bytes = valid_checkpoint();
        check_file(&bytes[..at.index(bytes.len())]);
    }

    #[test]
    fn numbers_in_the_metadata(which in any::<prop::sample::Index>(), value in prop_oneof![
        Just(u64::MAX), Just(0u64), Just(1u64 << 32), Just(1u64 << 20), any::<u64>()
    ]) {
        // Replace one number of the header (sizes, the step, the configuration) with another.
        let bytes = valid_checkpoint();
        let range = header_range(bytes);
        let header = String::from_utf8_lossy(&bytes[range.clone()]).into_owned();
        let runs: Vec<(usize, usize)> = header
            .char_indices()
            .filter(|(_, c)| c.is_ascii_digit())
            .fold(Vec::new(), |mut v: Vec<(usize, usize)>, (i, _)| {
                match v.last_mut() {
                    Some(last) if last.1 == i => last.1 = i + 1,
                    _ => v.push((i, i + 1)),
                }
                v
            });
        prop_assume!(!runs.is_empty());
        let (a, b) = runs[which.index(runs.len())];
        let new_header = format!("{}{value}{}", &header[..a], &header[b..]);
        let mut file = (new_header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(new_header.as_bytes());
        file.extend_from_slice(&bytes[range.end..]);
        check_file(&file);
    }

    #[test]
    fn csv_of_random_text(text in "[0-9a-z,.\"\\-\n\r\u{feff} ]{0,2000}") {
        let largest = largest_allocation(|| {
            let _ = unroll::series::parse_csv(&text, "fuzz.csv");
        });
        prop_assert!(largest <= bound(text.len()), "{} bytes of CSV allocated {largest}", text.len());
    }
}
