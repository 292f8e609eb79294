//! What a new user and a hostile one meet: sizes that cannot fit refused before the memory is
//! taken, flags that do not apply refused, a resumed run that does what it was told, files that
//! unroll did not write kept, and messages in words. Each case runs the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{fails_in, succeeds_in, text};

fn unroll() -> Command {
    Command::new(env!("CARGO_BIN_EXE_unroll"))
}

/// A small CPU run's flags.
const SMALL: [&str; 12] = [
    "train",
    "--device",
    "cpu",
    "--quiet",
    "--hidden",
    "8",
    "--batch",
    "2",
    "--seq-len",
    "8",
    "--eval-every",
    "2",
];

fn small<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    SMALL.iter().copied().chain(extra.iter().copied()).collect()
}

/// Runs unroll to its end and returns its exit status, its output, and the most memory it held
/// (its peak resident set, as the kernel counted it).
#[cfg(target_os = "linux")]
// The child is reaped by wait4, which also reports its peak memory (std's wait does not).
#[allow(clippy::zombie_processes)]
fn peak_rss(cwd: &Path, args: &[&str]) -> (Option<i32>, String, u64) {
    let child = unroll()
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (mut out, mut err) = (child.stdout.unwrap(), child.stderr.unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let mut said = String::new();
    std::io::Read::read_to_string(&mut out, &mut said).unwrap();
    said += &reader.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we own and reaps it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, said, usage.ru_maxrss as u64 * 1024)
}

#[test]
#[cfg(target_os = "linux")]
fn sizes_that_cannot_fit_are_refused_before_the_memory_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lstm = ["--cell", "lstm"];
    let cases: Vec<Vec<&str>> = vec![
        // Gated and stacked models, on the GPU (whose fit is checked first) and on the CPU.
        [
            &["check"][..],
            &lstm,
            &["--hidden", "16384", "--batch", "1", "--steps", "1"],
        ]
        .concat(),
        [
            &["check", "--device", "cpu", "--layers", "4"][..],
            &lstm,
            &["--hidden", "16384", "--batch", "1", "--steps", "1"],
        ]
        .concat(),
        [
            &["train"][..],
            &lstm,
            &[
                "--hidden",
                "16384",
                "--batch",
                "1",
                "--seq-len",
                "1",
                "--iters",
                "1",
            ],
        ]
        .concat(),
        [
            &["train"][..],
            &lstm,
            &["--layers", "64", "--hidden", "8192"],
        ]
        .concat(),
        [
            &["train", "--device", "cpu"][..],
            &lstm,
            &["--layers", "64", "--hidden", "8192"],
        ]
        .concat(),
        [
            "train", "--device", "cpu", "--hidden", "16384", "--layers", "64",
        ]
        .to_vec(),
    ];
    for args in cases {
        let (code, said, rss) = peak_rss(d, &args);
        assert_eq!(code, Some(2), "unroll {args:?}:\n{said}");
        assert!(!said.contains("panicked"), "{said}");
        // The refusal names what does fit.
        assert!(
            said.contains("the largest settings that fit"),
            "unroll {args:?}:\n{said}"
        );
        assert!(
            rss < 300 << 20,
            "unroll {args:?} held {} MiB before refusing:\n{said}",
            rss >> 20
        );
    }
    // Nothing was left behind: no run directory for a run that never started.
    assert!(!d.join("runs").exists());
}

#[test]
fn a_cpu_budget_that_is_no_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for budget in ["NaN", "inf", "-1", "0"] {
        fails_in(
            dir.path(),
            &[
                "bench",
                "--config",
                "8,1,2",
                "--steps",
                "1",
                "--cpu-budget",
                budget,
            ],
            &["--cpu-budget", "seconds"],
        );
    }
}

#[test]
fn flags_that_do_not_apply_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_in(
        d,
        &small(&["--cell", "gru", "--nonlinearity", "relu"]),
        &["--nonlinearity", "only the rnn"],
    );
    let case = "tests/fixtures/cells/cells_gru_L2_dense_I7_H16_B4_T9_s4.safetensors";
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join(case);
    let case = case.to_str().unwrap();
    fails_in(
        d,
        &[
            "check", "--case", case, "--cell", "lstm", "--layers", "3", "--hidden", "99",
        ],
        &["--cell", "--layers", "--hidden", "--case reads the model"],
    );
    fails_in(
        d,
        &["bench", "--cell", "gru", "--layers", "0", "--steps", "1"],
        &["--layers 0"],
    );
    fails_in(
        d,
        &["bench", "--layers", "2", "--config", "8,1,2"],
        &["--layers", "--cell"],
    );
    fails_in(
        d,
        &[
            "check",
            "--dump",
            "x.safetensors",
            "--save-case",
            "x.safetensors",
        ],
        &["--dump and --save-case name one file"],
    );
    fails_in(
        d,
        &small(&["--recurrence", "persistent"]),
        &["--recurrence", "--device cpu"],
    );
    fails_in(
        d,
        &["check", "--device", "cpu", "--backend", "gl"],
        &["--backend"],
    );
    fails_in(d, &["info", "--recurrence", "per-step"], &["--recurrence"]);
    fails_in(
        d,
        &["check", "--output", "7", "--device", "cpu"],
        &["--output", "--kind dense"],
    );
    fails_in(d, &small(&["--columns", "a"]), &["--columns", "series"]);
    fails_in(d, &small(&["--momentum", "0.5"]), &["--momentum", "SGD"]);
    fails_in(
        d,
        &small(&["--lr-decay-every", "10"]),
        &["--lr-decay-every"],
    );
    fails_in(
        d,
        &[
            "check",
            "--dump",
            "./y.safetensors",
            "--save-case",
            "y.safetensors",
        ],
        &["name one file"],
    );
    fails_in(
        d,
        &[
            "bench",
            "--steps",
            "18446744073709551615",
            "--config",
            "8,1,2",
        ],
        &["--steps"],
    );
    fails_in(d, &small(&["--max-bytes", "10"]), &["--max-bytes"]);
    assert!(!d.join("runs").exists() && !d.join("x.safetensors").exists());
}

/// A CPU run on the built-in corpus, started in the background.
fn spawn_run(out: &Path, extra: &[&str]) -> std::process::Child {
    unroll()
        .args([
            "train", "--device", "cpu", "--quiet", "--hidden", "8", "--batch", "2",
        ])
        .args(["--seq-len", "8", "--iters", "1000000", "--log-every", "1"])
        .args(["--eval-every", "1000000", "--sample-len", "0", "--out"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has written `rows` metrics rows (a bound only against a hang).
fn wait_for_rows(child: &mut std::process::Child, dir: &Path, rows: usize) {
    let start = std::time::Instant::now();
    while std::fs::read_to_string(dir.join("metrics.csv")).map_or(0, |s| s.lines().count())
        < rows + 1
    {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(start.elapsed().as_secs() < 600, "training made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .args(["-s", "INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn resume_honours_a_lower_iters_and_refuses_one_behind_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A long run stopped early, as by Ctrl-C: it checkpoints where it stopped.
    let mut child = spawn_run(d, &[]);
    wait_for_rows(&mut child, d, 3);
    interrupt(child.id());
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    // Before its first evaluation the run has no validation loss to report, and says so.
    assert!(said.contains("validation loss not measured yet"), "{said}");
    let ck = d.join("model.safetensors");
    let step = unroll::checkpoint::Checkpoint::load(&ck).unwrap().info.step;
    let ck_s = ck.to_str().unwrap();
    let behind = (step - 1).to_string();
    fails_in(
        d,
        &[
            "train", "--device", "cpu", "--resume", ck_s, "--iters", &behind,
        ],
        &["behind the checkpoint", &format!("at step {step}")],
    );
    // A total below the run's configured 1,000,000 is the total the resumed run reaches.
    let target = (step + 2).to_string();
    let said = succeeds_in(
        d,
        &[
            "train",
            "--device",
            "cpu",
            "--quiet",
            "--resume",
            ck_s,
            "--iters",
            &target,
            "--sample-len",
            "40",
        ],
    );
    let now = unroll::checkpoint::Checkpoint::load(&ck).unwrap();
    assert_eq!(now.info.step, step + 2, "{said}");
    // --sample-len only changes what is shown, so a resumed run takes it.
    assert!(said.contains("sample:"), "{said}");
}

#[test]
fn a_run_that_fails_to_start_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_in(
        d,
        &small(&["--data", "missing.txt", "--out", "new/run"]),
        &["no such file"],
    );
    assert!(!d.join("new").exists(), "the directories it made are gone");
    std::fs::create_dir(d.join("mine")).unwrap();
    fails_in(
        d,
        &small(&["--data", "missing.txt", "--out", "mine"]),
        &["no such file"],
    );
    let left: Vec<_> = std::fs::read_dir(d.join("mine"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn divergence_before_the_first_checkpoint_says_none_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let all = fails_in(
        dir.path(),
        &small(&[
            "--optimizer",
            "sgd",
            "--lr",
            "1e38",
            "--clip",
            "0",
            "--log-every",
            "1",
            "--iters",
            "50",
            "--out",
            "r",
        ]),
        &["training diverged at step", "no checkpoint was written"],
    );
    assert!(!all.contains("is kept"), "{all}");
}

/// A series checkpoint trained on `csv` (or the built-in series) in `dir/name`.
fn series_run(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let args: Vec<&str> = SMALL
        .iter()
        .copied()
        .chain(["--task", "series", "--iters", "2", "--out", name])
        .chain(extra.iter().copied())
        .collect();
    succeeds_in(dir, &args);
    dir.join(name).join("model.safetensors")
}

#[test]
fn csv_rows_are_time_steps_and_unused_columns_may_hold_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = |blank_at: Option<usize>| {
        let mut s = String::from("a,date,b\n");
        for i in 0..200 {
            if Some(i) == blank_at {
                s.push('\n');
            }
            // The date column has gaps: no model can read it, and none needs to.
            let date = if i % 3 == 0 {
                String::new()
            } else {
                format!("2026-01-{i}")
            };
            s += &format!("{},{date},{}\n", i % 7, i % 5);
        }
        s
    };
    std::fs::write(d.join("gap.csv"), rows(Some(100))).unwrap();
    fails_in(
        d,
        &small(&["--task", "series", "--data", "gap.csv", "--columns", "a,b"]),
        &["line 102 is blank"],
    );
    // A file without a header whose first column is dates keeps its first row: a header names
    // columns, and this row names none (its other cells are numbers, as below them).
    let table = unroll::series::parse_csv("2026-01-01,1,2\n2026-01-02,3,4\n", "d.csv").unwrap();
    assert_eq!((table.rows.len(), table.names.len()), (2, 3));
    let table = unroll::series::parse_csv("date,a,b\n2026-01-01,1,2\n2026-01-02,3,4\n", "d.csv");
    assert_eq!(table.unwrap().names, ["date", "a", "b"]);
    // Blank lines at the end are no time step.
    std::fs::write(d.join("ok.csv"), rows(None) + "\n\n").unwrap();
    let ck = series_run(d, "run", &["--data", "ok.csv", "--columns", "a,b"]);
    fails_in(
        d,
        &small(&["--task", "series", "--data", "ok.csv", "--out", "all"]),
        &["`date`", "--columns"],
    );
    let out = succeeds_in(
        d,
        &[
            "forecast",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--data",
            "ok.csv",
            "--horizon",
            "3",
            "--out",
            "f.csv",
        ],
    );
    assert!(out.contains("forecast of 3 steps"), "{out}");
    // A column missing from a wide CSV: a few names and a count, not all of them.
    let wide: String = (0..100_000)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let values: String = vec!["1"; 100_000].join(",");
    std::fs::write(d.join("wide.csv"), format!("{wide}\n{values}\n{values}\n")).unwrap();
    let said = fails_in(
        d,
        &small(&[
            "--task",
            "series",
            "--data",
            "wide.csv",
            "--columns",
            "nope",
        ]),
        &[
            "no column `nope`",
            "the 100000 columns are",
            "and 99992 more",
        ],
    );
    assert!(said.len() < 2000, "{} bytes of message", said.len());
}

#[test]
fn files_unroll_did_not_write_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = series_run(d, "run", &[]);
    let ck_s = ck.to_str().unwrap();
    // A user's CSV whose header is the forecast's own (the built-in series' columns a, b).
    let history = "a,b\n1,2\n3,4\n";
    std::fs::write(d.join("my_history.csv"), history).unwrap();
    let forecast = |out| {
        [
            "forecast",
            "--checkpoint",
            ck_s,
            "--horizon",
            "3",
            "--out",
            out,
        ]
    };
    fails_in(d, &forecast("my_history.csv"), &["not a forecast"]);
    assert_eq!(
        std::fs::read_to_string(d.join("my_history.csv")).unwrap(),
        history
    );
    // The CSV and the plot never share a path.
    fails_in(
        d,
        &forecast("f.svg"),
        &["the CSV and the plot would be one file"],
    );
    assert!(!d.join("f.svg").exists());
    // A forecast of unroll's is replaced; once changed by hand it is the user's.
    let args = forecast("mine.csv");
    succeeds_in(d, &args);
    succeeds_in(d, &args);
    std::fs::write(d.join("mine.csv"), "a,b\n0,0\n").unwrap();
    fails_in(d, &args, &["not a forecast"]);
    assert_eq!(
        std::fs::read_to_string(d.join("mine.csv")).unwrap(),
        "a,b\n0,0\n"
    );

    // A safetensors file of the user's with a `config` entry is no dump of unroll's.
    let users = d.join("users.safetensors");
    let meta = std::collections::HashMap::from([("config".to_string(), "{}".to_string())]);
    let t = unroll::tensorfile::OwnedTensor::f32("x", vec![2], &[1.0, 2.0]);
    unroll::tensorfile::write_atomic(&users, &[t], meta).unwrap();
    let before = std::fs::read(&users).unwrap();
    let check = [
        "check", "--device", "cpu", "--hidden", "4", "--batch", "1", "--steps", "2",
    ];
    let with = |flag: &'static str, path: &'static str| {
        check
            .iter()
            .copied()
            .chain([flag, path])
            .collect::<Vec<_>>()
    };
    fails_in(d, &with("--dump", "users.safetensors"), &["not a dump"]);
    fails_in(
        d,
        &with("--save-case", "users.safetensors"),
        &["not a case"],
    );
    assert_eq!(std::fs::read(&users).unwrap(), before);
    // A trained checkpoint is no case to replace.
    let ck_before = std::fs::read(&ck).unwrap();
    fails_in(
        d,
        &with("--save-case", "run/model.safetensors"),
        &["not a case"],
    );
    assert_eq!(std::fs::read(&ck).unwrap(), ck_before);
    // Its own dump and case are replaced.
    for _ in 0..2 {
        succeeds_in(d, &with("--dump", "dump.safetensors"));
        succeeds_in(d, &with("--save-case", "case.safetensors"));
    }
}

#[test]
fn a_checkpoint_changed_by_hand_is_a_damaged_file_not_a_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = small(&[
        "--cell",
        "lstm",
        "--iters",
        "2",
        "--out",
        "run",
        "--sample-len",
        "0",
    ]);
    succeeds_in(d, &args);
    let path = d.join("run/model.safetensors");
    let mut ck = unroll::checkpoint::Checkpoint::load(&path).unwrap();
    // The carried cell state of the last stream is NaN.
    let carry = ck.hidden.as_mut().unwrap();
    *carry.last_mut().unwrap() = f32::NAN;
    ck.save(&path).unwrap();
    let said = fails_in(
        d,
        &[
            "train",
            "--device",
            "cpu",
            "--resume",
            path.to_str().unwrap(),
        ],
        &["not finite", "state.cell", "changed or damaged"],
    );
    assert!(
        !said.contains("diverged") && !said.contains("--lr"),
        "{said}"
    );
}

#[test]
fn the_default_run_scores_its_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeeds_in(
        dir.path(),
        &[
            "train",
            "--device",
            "cpu",
            "--quiet",
            "--hidden",
            "16",
            "--iters",
            "30",
            "--sample-len",
            "200",
        ],
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("sample score: "))
        .unwrap_or_else(|| panic!("no score:\n{out}"));
    // `sample score: C of the sample's N complete lines are right equations (W well-formed); a
    // sample of the same length from the character frequencies alone: U of M`.
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 5, "{line}");
    let (c, n, w, u, m) = (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]);
    assert!(c <= w && w <= n && u <= m && n > 0 && m > 0, "{line}");
    // The sample it scores is the one printed.
    let sample = out.split("sample:\n").nth(1).unwrap();
    let sample = sample.split("\nsample score: ").next().unwrap();
    assert_eq!(unroll::data::arithmetic_counts(sample), (n, w, c), "{out}");
    // A run on the user's own text has no such score.
    let text: String = "the cat sat on the mat.\n".repeat(200);
    std::fs::write(dir.path().join("t.txt"), text).unwrap();
    let out = succeeds_in(
        dir.path(),
        &[
            "train", "--device", "cpu", "--quiet", "--hidden", "8", "--iters", "2", "--data",
            "t.txt", "--out", "t",
        ],
    );
    assert!(!out.contains("sample score"), "{out}");
}

#[test]
fn hints_of_a_resumed_run_say_what_a_resumed_run_can_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    succeeds_in(
        d,
        &small(&["--iters", "2", "--out", "run", "--sample-len", "0"]),
    );
    std::fs::write(d.join("short.txt"), "1+1=2\n").unwrap();
    fails_in(
        d,
        &[
            "train",
            "--device",
            "cpu",
            "--resume",
            "run/model.safetensors",
            "--data",
            "short.txt",
            "--iters",
            "4",
        ],
        &["too short", "this run resumes", "start a new run"],
    );
}

#[test]
fn bench_products_times_both_kernels_and_refuses_what_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "bench",
        "--products",
        "--config",
        "8,2,3",
        "--steps",
        "1",
        "--warmup",
        "0",
    ];
    let out = succeeds_in(d, &args);
    for needle in ["dW at 8,2,3", "8×8×6", "1024³", "tiled", "matmul"] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    fails_in(
        d,
        &["bench", "--products", "--cell", "lstm"],
        &["--cell", "--products"],
    );
    fails_in(
        d,
        &[
            "bench",
            "--products",
            "--config",
            "100000,64,64",
            "--steps",
            "1",
        ],
        &["max_storage_buffer_binding_size"],
    );
}
