//! The binary never destroys what the user did not ask it to, and turns bad sizes and hostile
//! files into clear errors: each case runs `unroll` and shows the user's file intact or the error.

use std::path::{Path, PathBuf};
use std::process::Command;
use unroll::checkpoint::Checkpoint;

fn unroll() -> Command {
    Command::new(env!("CARGO_BIN_EXE_unroll"))
}

mod common;
use common::{fails_in, succeeds_in, text};

const SMALL: [&str; 14] = [
    "--device",
    "cpu",
    "--quiet",
    "--hidden",
    "8",
    "--batch",
    "2",
    "--seq-len",
    "8",
    "--log-every",
    "2",
    "--eval-every",
    "2",
    "--sample-len=0",
];

/// `unroll train` with the small settings, `extra` after them (a series run prints no sample,
/// so it takes no --sample-len).
fn train(_: &Path, extra: &[&str]) -> Vec<String> {
    let series = extra.contains(&"series");
    ["train"]
        .iter()
        .chain(
            SMALL
                .iter()
                .filter(|a| !(series && a.starts_with("--sample-len"))),
        )
        .chain(extra.iter())
        .map(|s| s.to_string())
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_owned()
}

#[test]
fn train_refuses_an_out_directory_with_the_users_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("data");
    std::fs::create_dir(&out).unwrap();
    // The user's own files under the names unroll writes, and one of its own besides.
    let data = write(
        &out.join("model.safetensors"),
        b"the user's data, not a checkpoint",
    );
    let metrics = write(&out.join("metrics.csv"), b"a,b\n1,2\n");
    let plot = write(&out.join("loss.svg"), b"<svg>the user's plot</svg>");
    let notes = write(&out.join(".model.safetensors.tmp-notes"), b"notes");
    let args = train(d, &["--iters", "2", "--out", out.to_str().unwrap()]);
    fails_in(
        d,
        &strs(&args),
        &["did not write", "--force", "model.safetensors"],
    );
    assert_eq!(
        std::fs::read(&data).unwrap(),
        b"the user's data, not a checkpoint"
    );
    assert_eq!(std::fs::read(&metrics).unwrap(), b"a,b\n1,2\n");
    assert_eq!(std::fs::read(&plot).unwrap(), b"<svg>the user's plot</svg>");
    assert_eq!(std::fs::read(&notes).unwrap(), b"notes");
    // The refusal leaves nothing of unroll's there, so --force works next.
    assert!(!out.join("unroll.lock").exists());
    let args = train(
        d,
        &["--iters", "2", "--force", "--out", out.to_str().unwrap()],
    );
    succeeds_in(d, &strs(&args));
}

#[test]
fn force_writes_unrolls_files_and_leaves_other_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let notes = write(&d.join(".model.safetensors.tmp-notes"), b"notes");
    let mine = write(&d.join("mine.txt"), b"mine");
    // A file named as unroll names its temporaries, with no lock saying that a run wrote it:
    // the user's.
    let users = write(
        &d.join(".model.safetensors.unroll-tmp-999999999"),
        b"mine too",
    );
    let args = train(d, &["--iters", "2", "--force", "--out", "."]);
    succeeds_in(d, &strs(&args));
    assert!(Checkpoint::load(&d.join("model.safetensors")).is_ok());
    assert_eq!(std::fs::read(&notes).unwrap(), b"notes");
    assert_eq!(std::fs::read(&mine).unwrap(), b"mine");
    assert_eq!(std::fs::read(&users).unwrap(), b"mine too");
}

#[test]
fn a_dead_runs_temporary_named_in_its_lock_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    succeeds_in(d, &strs(&train(d, &["--iters", "2", "--out", "."])));
    // The lock and the temporary a run leaves when it is killed while writing its checkpoint
    // (pid 999999999 exists on no Linux: pid_max is at most 2^22).
    let tmp = ".model.safetensors.unroll-tmp-999999999";
    write(
        &d.join("unroll.lock"),
        format!("unroll run lock\npid 999999999\nwriting {tmp}\n").as_bytes(),
    );
    write(&d.join(tmp), b"half a checkpoint");
    succeeds_in(d, &strs(&train(d, &["--iters", "2", "--out", "."])));
    assert!(!d.join(tmp).exists(), "the dead run's temporary is removed");
    // A lock that is not unroll's is left alone, and the run refused.
    write(&d.join("unroll.lock"), b"my lock notes");
    fails_in(
        d,
        &strs(&train(d, &["--iters", "2", "--out", ".", "--force"])),
        &["unroll.lock", "not a lock file that unroll wrote"],
    );
    assert_eq!(
        std::fs::read(d.join("unroll.lock")).unwrap(),
        b"my lock notes"
    );
    // A pid alone is the lock of an older unroll only beside a run's files: elsewhere it is a
    // user's pidfile.
    let other = tempfile::tempdir().unwrap();
    let pidfile = write(&other.path().join("unroll.lock"), b"4242\n");
    let out = other.path().to_str().unwrap();
    fails_in(
        d,
        &strs(&train(d, &["--iters", "2", "--out", out])),
        &["not a lock file that unroll wrote"],
    );
    assert_eq!(std::fs::read(&pidfile).unwrap(), b"4242\n");
    write(&d.join("unroll.lock"), b"4242\n");
    succeeds_in(d, &strs(&train(d, &["--iters", "2", "--out", "."])));
}

#[test]
fn a_run_directory_of_unroll_is_reused_and_resume_stays_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = d.join("run");
    let run_s = run.to_str().unwrap();
    succeeds_in(d, &strs(&train(d, &["--iters", "4", "--out", run_s])));
    // Its own files do not make the directory foreign.
    succeeds_in(d, &strs(&train(d, &["--iters", "4", "--out", run_s])));
    // --resume without --out writes beside its checkpoint, never into runs/default.
    let ck = run.join("model.safetensors");
    let ck_s = ck.to_str().unwrap();
    let said = succeeds_in(
        d,
        &[
            "train", "--device", "cpu", "--quiet", "--resume", ck_s, "--iters", "6",
        ],
    );
    assert!(said.contains("given here: --iters"), "{said}");
    assert!(!d.join("runs").exists(), "nothing written to runs/default");
    assert_eq!(Checkpoint::load(&ck).unwrap().info.step, 6);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("6,")), "{metrics}");
    // A flag that would change the run is an error, not silently ignored.
    fails_in(
        d,
        &[
            "train", "--device", "cpu", "--resume", ck_s, "--lr", "0.5", "--hidden", "9",
        ],
        &["--lr", "--hidden", "would change it"],
    );
    assert_eq!(Checkpoint::load(&ck).unwrap().info.step, 6);
}

#[test]
fn two_runs_in_one_directory_do_not_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = train(
        d,
        &[
            "--iters",
            "100000000",
            "--checkpoint-every",
            "0",
            "--out",
            ".",
        ],
    );
    let mut first = unroll()
        .current_dir(d)
        .args(strs(&args))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first run to hold the lock: its first metrics row is written after it.
    let metrics = d.join("metrics.csv");
    while std::fs::read_to_string(&metrics).map_or(0, |s| s.lines().count()) < 2 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let said = fails_in(
        d,
        &strs(&train(d, &["--iters", "2", "--out", "."])),
        &["another unroll run"],
    );
    assert!(said.contains(&format!("pid {}", first.id())), "{said}");
    first.kill().unwrap();
    first.wait().unwrap();
    // The dead run's lock is taken over.
    succeeds_in(d, &strs(&train(d, &["--iters", "2", "--out", "."])));
}

/// A series checkpoint in `dir`.
fn series_checkpoint(dir: &Path) -> PathBuf {
    let args = train(dir, &["--task", "series", "--iters", "2", "--out", "."]);
    succeeds_in(dir, &strs(&args));
    dir.join("model.safetensors")
}

#[test]
fn forecast_never_replaces_its_input_or_a_file_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = series_checkpoint(d);
    let ck_s = ck.to_str().unwrap();
    let rows: String = std::iter::once("a,b\n".to_string())
        .chain((0..60).map(|i| format!("{},{}\n", i % 7, i % 5)))
        .collect();
    let data = write(&d.join("history.csv"), rows.as_bytes());
    let data_s = data.to_str().unwrap();
    let base = [
        "forecast",
        "--checkpoint",
        ck_s,
        "--data",
        data_s,
        "--horizon",
        "5",
    ];
    fn with<'a>(base: &[&'a str], out: &'a str) -> Vec<&'a str> {
        base.iter().copied().chain(["--out", out]).collect()
    }
    let with_out = |out| with(&base, out);
    fails_in(d, &with_out(data_s), &["is an input"]);
    assert_eq!(std::fs::read_to_string(&data).unwrap(), rows);
    // `loss.csv` would put its plot over train's loss.svg.
    let plot_before = std::fs::read(d.join("loss.svg")).unwrap();
    fails_in(
        d,
        &with_out("loss.csv"),
        &["loss.svg", "not a forecast plot"],
    );
    assert_eq!(std::fs::read(d.join("loss.svg")).unwrap(), plot_before);
    // A CSV of the user's.
    let users = write(&d.join("users.csv"), b"x,y\n1,2\n");
    fails_in(d, &with_out(users.to_str().unwrap()), &["not a forecast"]);
    assert_eq!(std::fs::read(&users).unwrap(), b"x,y\n1,2\n");
    // Its own forecast is replaced on a second run.
    succeeds_in(d, &with_out("f.csv"));
    succeeds_in(d, &with_out("f.csv"));
}

#[test]
fn sizes_from_flags_are_checked_before_arithmetic_and_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cpu = ["train", "--device", "cpu", "--quiet", "--out", "o"];
    let with = |extra: &[&'static str]| cpu.iter().chain(extra).copied().collect::<Vec<_>>();
    fails_in(
        d,
        &with(&["--seq-len", "18446744073709551615"]),
        &["sequence length", "too large"],
    );
    fails_in(
        d,
        &with(&["--batch", "4000000", "--seq-len", "4000000"]),
        &["positions per step"],
    );
    let ck = d.join("c");
    std::fs::create_dir(&ck).unwrap();
    let ck_s = ck.to_str().unwrap();
    succeeds_in(d, &strs(&train(d, &["--iters", "2", "--out", ck_s])));
    let model = ck.join("model.safetensors");
    let model_s = model.to_str().unwrap();
    fails_in(
        d,
        &["sample", "--checkpoint", model_s, "--len", "1000000000000"],
        &["too long", "--len"],
    );
    let series = d.join("s");
    std::fs::create_dir(&series).unwrap();
    let series_ck = series_checkpoint(&series);
    fails_in(
        d,
        &[
            "forecast",
            "--checkpoint",
            series_ck.to_str().unwrap(),
            "--horizon",
            "1000000000000",
            "--out",
            "f.csv",
        ],
        &["horizon is 1000000000000"],
    );
}

#[test]
fn hostile_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text_run = d.join("t");
    std::fs::create_dir(&text_run).unwrap();
    succeeds_in(
        d,
        &strs(&train(
            d,
            &["--iters", "2", "--out", text_run.to_str().unwrap()],
        )),
    );
    let mut ck = Checkpoint::load(&text_run.join("model.safetensors")).unwrap();
    // NaN weights: sampling says so instead of panicking.
    ck.params.data.iter_mut().for_each(|v| *v = f32::NAN);
    let nan = d.join("nan.safetensors");
    ck.save(&nan).unwrap();
    fails_in(
        d,
        &[
            "sample",
            "--checkpoint",
            nan.to_str().unwrap(),
            "--temperature",
            "0.8",
        ],
        &["NaN"],
    );
    // A sequence length in the metadata that overflows.
    let mut ck = Checkpoint::load(&text_run.join("model.safetensors")).unwrap();
    ck.info.train.as_mut().unwrap().seq_len = usize::MAX;
    let long = d.join("long.safetensors");
    ck.save(&long).unwrap();
    fails_in(
        d,
        &[
            "train",
            "--device",
            "cpu",
            "--resume",
            long.to_str().unwrap(),
            "--out",
            "r",
        ],
        &["training configuration", "too large"],
    );
    // Column statistics that do not fit the model.
    let series = d.join("s");
    std::fs::create_dir(&series).unwrap();
    let mut ck = Checkpoint::load(&series_checkpoint(&series)).unwrap();
    ck.info.normalization.as_mut().unwrap().input_mean.clear();
    let stats = d.join("stats.safetensors");
    ck.save(&stats).unwrap();
    fails_in(
        d,
        &[
            "forecast",
            "--checkpoint",
            stats.to_str().unwrap(),
            "--out",
            "f.csv",
        ],
        &["column statistics"],
    );
}

#[test]
fn data_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for data in [fifo.to_str().unwrap(), "/dev/zero"] {
        fails_in(
            d,
            &strs(&train(d, &["--iters", "1", "--data", data, "--out", "o"])),
            &["not a regular file"],
        );
    }
    let big = write(&d.join("big.txt"), &[b'a'; 5000]);
    fails_in(
        d,
        &strs(&train(
            d,
            &[
                "--data",
                big.to_str().unwrap(),
                "--max-bytes",
                "4096",
                "--out",
                "o",
            ],
        )),
        &["more than the limit of 4096", "--max-bytes"],
    );
}

#[test]
fn a_csv_with_many_columns_fails_at_once_and_a_bom_is_not_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wide: String = (0..2)
        .map(|r| {
            (0..100_000)
                .map(|c| ((r + c) % 10).to_string())
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    let path = write(&d.join("wide.csv"), wide.as_bytes());
    let columns: String = (0..10_000)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    fails_in(
        d,
        &strs(&train(
            d,
            &[
                "--task",
                "series",
                "--data",
                path.to_str().unwrap(),
                "--columns",
                &columns,
                "--out",
                "o",
            ],
        )),
        &["too few"],
    );
    let rows: String = (0..40).map(|i| format!("{i},{}\n", i * 2)).collect();
    let table = unroll::series::parse_csv(&format!("\u{feff}{rows}"), "bom.csv").unwrap();
    assert_eq!(table.names, ["0", "1"], "a BOM is not a header");
    assert_eq!(table.rows.len(), 40);
    assert_eq!(table.rows[0], [0.0, 0.0]);
    let quoted = unroll::series::parse_csv("\"load, kW\",temp\n1,2\n3,4\n", "q.csv").unwrap();
    assert_eq!(quoted.names, ["load, kW", "temp"]);
}

#[test]
fn check_on_a_chaotic_model_passes_with_the_ratio_shown() {
    let dir = tempfile::tempdir().unwrap();
    let out = unroll()
        .current_dir(dir.path())
        .args(["check", "--hidden", "96", "--steps", "40", "--batch", "4"])
        .args(["--init-scale", "0.4", "--recurrence", "per-step"])
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("f32's own") && all.contains("ratio"), "{all}");
    assert!(all.contains("check passed"), "{all}");
}

#[test]
fn a_text_of_100000_distinct_characters_trains_on_the_gpu_as_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 10^5 distinct characters (CJK and beyond, skipping the surrogates), each a few times.
    let chars: Vec<char> = (0x4E00u32..)
        .filter_map(char::from_u32)
        .take(100_000)
        .collect();
    let mut text = String::new();
    for round in 0..2 {
        for (i, c) in chars.iter().enumerate() {
            text.push(*c);
            if (i + round) % 61 == 0 {
                text.push('\n');
            }
        }
    }
    let data = write(&d.join("wide.txt"), text.as_bytes());
    let mut losses = Vec::new();
    for device in ["gpu", "cpu"] {
        let out = d.join(device);
        let said = succeeds_in(
            d,
            &[
                "train",
                "--device",
                device,
                "--quiet",
                "--hidden",
                "16",
                "--batch",
                "1",
                "--seq-len",
                "8",
                "--iters",
                "3",
                "--log-every",
                "1",
                "--eval-every",
                "3",
                "--sample-len",
                "0",
                "--val-fraction",
                "0.02",
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let line = said
            .lines()
            .find(|l| l.starts_with("step 3: train loss"))
            .unwrap_or_else(|| panic!("{said}"));
        let loss: f64 = line
            .split("train loss ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        losses.push(loss);
    }
    // A cross-entropy over 100,000 classes starts near ln(100000) = 11.5, never below 0.
    assert!(losses.iter().all(|l| (5.0..20.0).contains(l)), "{losses:?}");
    assert!(
        (losses[0] - losses[1]).abs() < 1e-3 * losses[1],
        "GPU {} vs CPU {}",
        losses[0],
        losses[1]
    );
}

#[test]
fn check_case_of_a_chaotic_model_passes_and_a_corrupted_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let case = d.join("chaotic.safetensors");
    let case_s = case.to_str().unwrap();
    succeeds_in(
        d,
        &[
            "check",
            "--hidden",
            "96",
            "--steps",
            "40",
            "--batch",
            "4",
            "--init-scale",
            "0.4",
            "--random-h0",
            "--save-case",
            case_s,
        ],
    );
    let said = succeeds_in(d, &["check", "--case", case_s]);
    assert!(
        said.contains("ratio") && said.contains("check passed"),
        "{said}"
    );
    // One element of the expected dW off by 1 % of the tensor's scale.
    let mut c = unroll::case::Case::load(&case).unwrap();
    let dw = c
        .expected
        .iter_mut()
        .find(|t| t.name == "grad.rnn.weight_hh_l0")
        .unwrap();
    let scale = dw.data.iter().fold(0f64, |a, v| a.max(v.abs()));
    dw.data[5] += 0.01 * scale;
    let bad = d.join("corrupted.safetensors");
    c.save(&bad).unwrap();
    let out = unroll()
        .current_dir(d)
        .args(["check", "--case", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("check FAILED"), "{all}");
    let failing: Vec<&str> = all
        .lines()
        .filter(|l| l.trim_end().ends_with("FAIL"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        failing.iter().all(|n| *n == "grad.rnn.weight_hh_l0") && !failing.is_empty(),
        "{all}"
    );
    // --save-case and --dump never replace a file that unroll did not write.
    let mine = write(&d.join("mine.safetensors"), b"not unroll's");
    fails_in(
        d,
        &[
            "check",
            "--hidden",
            "8",
            "--steps",
            "2",
            "--dump",
            mine.to_str().unwrap(),
        ],
        &["not a dump of `unroll check` that unroll wrote"],
    );
    assert_eq!(std::fs::read(&mine).unwrap(), b"not unroll's");
}
