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

/// A checkpoint of `cell` × `layers` as unroll writes it: parameters, optimizer state, carried
/// state and a vocabulary of 5 characters.
fn checkpoint_of(cell: unroll::Cell, layers: usize) -> Vec<u8> {
    use unroll::checkpoint::{Checkpoint, FORMAT, RunInfo};
    let config = unroll::ModelConfig::tokens(5, 6).with_cell(cell, layers);
    let params = unroll::Params::init(config, 3);
    let n = config.num_params();
    Checkpoint {
        params,
        info: RunInfo {
            format: FORMAT,
            config,
            vocab: Some(unroll::data::Vocab::Chars("\nabcd".chars().collect())),
            normalization: None,
            train: None,
            step: 7,
            best: None,
            classes: None,
        },
        optimizer: Some(unroll::optim::OptimizerState {
            m: vec![0.1; n],
            v: vec![0.2; n],
            step: 7,
            bias: [0.5, 0.25],
        }),
        hidden: Some(vec![0.0; config.carry_len(2)]),
        positions: Some(vec![0, 10]),
    }
    .to_bytes()
    .unwrap()
}

/// A change to a checkpoint's metadata (the run's JSON).
type Edit = dyn Fn(&mut serde_json::Value);

/// The same file with its `unroll` metadata changed by `edit` (the run's JSON).
fn with_metadata(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let range = header_range(bytes);
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[range.clone()]).unwrap();
    let meta = &mut header["__metadata__"]["unroll"];
    let mut run: serde_json::Value = serde_json::from_str(meta.as_str().unwrap()).unwrap();
    edit(&mut run);
    *meta = serde_json::Value::String(run.to_string());
    let text = header.to_string();
    let mut file = (text.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(text.as_bytes());
    file.extend_from_slice(&bytes[range.end..]);
    file
}

#[test]
fn checkpoints_whose_metadata_disagree_with_their_tensors_are_refused() {
    use unroll::Cell;
    for cell in Cell::ALL {
        for layers in 1..=3usize {
            let valid = checkpoint_of(cell, layers);
            let (_dir, path) = temp_file(&valid);
            assert!(unroll::checkpoint::Checkpoint::load(&path).is_ok());
            let other_cell = if cell.gates() == 1 { "lstm" } else { "rnn" };
            let edits: Vec<(String, Box<Edit>)> = vec![
                (
                    format!("layers {}", layers + 1),
                    Box::new(move |r| r["config"]["layers"] = (layers + 1).into()),
                ),
                (
                    format!("layers {}", layers - 1),
                    Box::new(move |r| r["config"]["layers"] = (layers - 1).into()),
                ),
                (
                    "hidden 7".into(),
                    Box::new(|r| r["config"]["hidden"] = 7.into()),
                ),
                (
                    format!("cell {other_cell}"),
                    Box::new(move |r| r["config"]["cell"] = other_cell.into()),
                ),
                (
                    "a character twice".into(),
                    Box::new(|r| {
                        r["vocab"]["chars"] = serde_json::json!(["\n", "a", "a", "c", "d"])
                    }),
                ),
            ];
            for (what, edit) in edits {
                let bytes = with_metadata(&valid, edit);
                let (_dir, path) = temp_file(&bytes);
                let largest = largest_allocation(|| {
                    let err = unroll::checkpoint::Checkpoint::load(&path)
                        .err()
                        .unwrap_or_else(|| panic!("{cell:?} × {layers}, {what}: accepted"));
                    let said = err.to_string();
                    assert!(
                        ["shape", "no tensor", "disagree", "twice", "is 0"]
                            .iter()
                            .any(|n| said.contains(n)),
                        "{cell:?} × {layers}, {what}: {said}"
                    );
                });
                assert!(largest <= bound(bytes.len()), "{what}: allocated {largest}");
            }
        }
    }
    // Through the binary: a clear error, no panic.
    let bytes = with_metadata(&checkpoint_of(Cell::Gru, 2), |r| {
        r["vocab"]["chars"] = serde_json::json!(["\n", "a", "a", "c", "d"])
    });
    let (_dir, path) = temp_file(&bytes);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
        .args(["sample", "--len", "5", "--checkpoint"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("appears twice"), "{said}");
}
