//! Data-parallel training over MPI (`--features mpi`): `mpirun -np 2` and `-np 3` on the adapter
//! `WGPU_BACKEND` picks. Every rank's parameters equal after a run; the same checkpoint bytes run
//! after run, under two of Open MPI's collective algorithms, and as the same ranks on devices in
//! one process; N ranks against one batch within float32 noise; resume; a killed rank ends the
//! job with an error and leaves the last checkpoint whole.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use unroll::checkpoint::Checkpoint;

/// A short run on B = 12 streams (divisible by 1, 2, 3 and 4 ranks) into `out`.
fn run_args<'a>(out: &'a str, iters: &'a str) -> Vec<&'a str> {
    common::short_run(out, iters, "12")
}

/// `mpirun -np N` (as root, more ranks than cores allowed) with `mca` options, of the binary.
fn mpirun(np: usize, mca: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &np.to_string(),
    ]);
    c.args(mca);
    c.arg(env!("CARGO_BIN_EXE_unroll"));
    c
}

/// Runs `mpirun -np N unroll ARGS` in `dir`; asserts success; returns its output.
fn mpi_train(dir: &Path, np: usize, mca: &[&str], args: &[&str]) -> String {
    let out = mpirun(np, mca)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let all = common::text(&out);
    assert!(out.status.success(), "mpirun -np {np} {args:?}:\n{all}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bytes(dir: &Path, out: &str) -> Vec<u8> {
    std::fs::read(dir.join(out).join("model.safetensors")).unwrap()
}

fn params(dir: &Path, out: &str) -> Vec<f32> {
    Checkpoint::load(&dir.join(out).join("model.safetensors"))
        .unwrap()
        .params
        .data
}

/// Open MPI's all-reduce algorithm K, chosen by hand.
fn algorithm(k: &'static str) -> [&'static str; 6] {
    [
        "--mca",
        "coll_tuned_use_dynamic_rules",
        "1",
        "--mca",
        "coll_tuned_allreduce_algorithm",
        k,
    ]
}

#[test]
fn ranks_agree_and_repeat_bit_for_bit_under_any_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for np in [2, 3] {
        let (a, b, c) = (format!("a{np}"), format!("b{np}"), format!("c{np}"));
        let out = mpi_train(d, np, &algorithm("1"), &run_args(&a, "24"));
        assert!(
            out.contains(&format!("optimizer state of all {np} ranks are equal")),
            "{out}"
        );
        // Rank 0 alone prints.
        assert_eq!(out.matches("checkpoint:").count(), 1, "{out}");
        mpi_train(d, np, &algorithm("1"), &run_args(&b, "24"));
        mpi_train(d, np, &algorithm("4"), &run_args(&c, "24"));
        assert_eq!(bytes(d, &a), bytes(d, &b), "np {np}: two runs differ");
        assert_eq!(bytes(d, &a), bytes(d, &c), "np {np}: two algorithms differ");
    }
    // The collectives the reduction does use, under other algorithms of their own.
    let moves = [
        "--mca",
        "coll_tuned_use_dynamic_rules",
        "1",
        "--mca",
        "coll_tuned_alltoall_algorithm",
        "2",
        "--mca",
        "coll_tuned_allgather_algorithm",
        "3",
    ];
    mpi_train(d, 3, &moves, &run_args("moves3", "24"));
    assert_eq!(bytes(d, "a3"), bytes(d, "moves3"));
    // 3 ranks split the model's 3,758 gradients (and the loss) unevenly: the padded slices give
    // the bits of the same reduction in one process.
    let mut args = run_args("devices3", "24");
    args.extend(["--devices", "0,0,0"]);
    common::succeeds_in(d, &args);
    assert_eq!(bytes(d, "a3"), bytes(d, "devices3"));
}

#[test]
fn the_exchange_benchmark_runs_over_ranks_and_other_commands_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = ["bench", "--exchange", "1000,3001", "--steps", "3"];
    let out = mpi_train(d, 2, &[], &args);
    // Rank 0 alone prints: one table of two rows.
    assert_eq!(out.matches("ranks; model").count(), 1, "{out}");
    assert!(
        out.contains("     1000      2") && out.contains("     3001      2"),
        "{out}"
    );
    let out = mpirun(2, &[]).arg("info").current_dir(d).output().unwrap();
    let all = common::text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("only `unroll train` and `unroll bench --exchange`"),
        "{all}"
    );
}

#[test]
fn mpi_ranks_match_devices_in_one_process_and_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mpi_train(d, 2, &[], &run_args("mpi", "24"));
    let mut args = run_args("devices", "24");
    args.extend(["--devices", "0,0"]);
    common::succeeds_in(d, &args);
    assert_eq!(bytes(d, "mpi"), bytes(d, "devices"));
    common::succeeds_in(d, &run_args("whole", "24"));
    let (whole, mpi) = (params(d, "whole"), params(d, "mpi"));
    let scale = whole.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = whole
        .iter()
        .zip(&mpi)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    eprintln!("2 ranks against one batch: {:.3e}", diff / scale);
    // Float32 rounding of a sum in another order: measured 2.1e-6 (tests/parallel.rs).
    assert!(diff / scale <= 1e-5, "{:e}", diff / scale);
    assert_ne!(bytes(d, "mpi"), bytes(d, "whole"));
}

#[test]
fn an_mpi_run_resumes_with_the_same_and_another_number_of_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mpi_train(d, 2, &[], &run_args("straight", "24"));
    mpi_train(d, 2, &[], &run_args("split", "12"));
    let resume = [
        "train",
        "--resume",
        "split/model.safetensors",
        "--iters",
        "24",
        "--quiet",
    ];
    let out = mpi_train(d, 2, &[], &resume);
    assert!(out.contains("resuming at step 12"), "{out}");
    assert_eq!(params(d, "straight"), params(d, "split"));
    // The streams' carried state cuts as well into 3 ranks, and into 1.
    let resume = [
        "train",
        "--resume",
        "split/model.safetensors",
        "--iters",
        "30",
        "--quiet",
    ];
    mpi_train(d, 3, &[], &resume);
    let resume = [
        "train",
        "--resume",
        "split/model.safetensors",
        "--iters",
        "36",
        "--quiet",
    ];
    common::succeeds_in(d, &resume);
    let ck = Checkpoint::load(&d.join("split").join("model.safetensors")).unwrap();
    assert_eq!(ck.info.step, 36);
}

#[test]
fn a_killed_rank_ends_the_job_and_leaves_the_last_checkpoint_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().canonicalize().unwrap();
    let (job, checkpoint) = long_job(d, "killed", &[]);
    let rank1 = rank_pid(d, 1).expect("rank 1's process");
    // SAFETY: a plain kill(2) of a child process of this test.
    assert_eq!(unsafe { libc::kill(rank1, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let out = wait_bounded(job, d, Duration::from_secs(30));
    assert!(killed.elapsed() < Duration::from_secs(30));
    let all = common::text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("rank 1"), "the error names no rank:\n{all}");
    let ck = Checkpoint::load(&checkpoint).expect("the last checkpoint is whole");
    assert!(ck.info.step >= 2 && ck.info.step.is_multiple_of(2));
}

/// Two different adapters, lavapipe (Vulkan) on rank 0 and llvmpipe (GL) on rank 1, each by
/// its own flags (mpirun's `:` gives each rank its command line): the same bytes as the same two
/// adapters as devices of one process, and every rank's parameters rank 0's at the end.
#[test]
fn lavapipe_beside_llvmpipe_matches_the_same_pair_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = run_args("pair", "24");
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", "1"]);
    c.arg(env!("CARGO_BIN_EXE_unroll"))
        .args(&run)
        .args(["--backend", "vulkan"]);
    c.args([":", "-np", "1", env!("CARGO_BIN_EXE_unroll")]);
    c.args(&run).args(["--backend", "gl"]);
    let out = c.current_dir(d).output().unwrap();
    let all = common::text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("(GL, software adapter)") && all.contains("rank 1: GPU"),
        "{all}"
    );
    assert!(
        all.contains("ranks agree") || all.contains("rank 0's were copied"),
        "{all}"
    );
    let mut local = run_args("local", "24");
    local.extend(["--backend", "vulkan,gl", "--devices", "0,1"]);
    let out = common::succeeds_in(d, &local);
    assert!(out.contains("(GL, software adapter)"), "{out}");
    assert_eq!(bytes(d, "pair"), bytes(d, "local"));
}

/// A rank that fails (here: no adapter of the name it was given) ends the job with its error.
#[test]
fn a_failing_rank_ends_the_job_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = run_args("failed", "24");
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", "1"]);
    c.arg(env!("CARGO_BIN_EXE_unroll")).args(&run);
    c.args([":", "-np", "1", env!("CARGO_BIN_EXE_unroll")]);
    c.args(&run).args(["--adapter", "no-such-adapter"]);
    let started = Instant::now();
    let out = c.current_dir(d).output().unwrap();
    let all = common::text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("error on rank 1 of 2") && all.contains("no-such-adapter"),
        "{all}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "{all}");
    assert!(!d.join("failed").join("model.safetensors").exists());
}

/// A signal on one rank (Ctrl-C reaches each rank through its launcher, at its own moment)
/// travels with the next step's gradients: every rank stops at one step, rank 0 checkpoints it,
/// and the job ends without mpirun having to kill anyone.
#[test]
fn an_interrupt_on_one_rank_stops_every_rank_at_one_step_and_checkpoints_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().canonicalize().unwrap();
    let (job, checkpoint) = long_job(d, "stopped", &[]);
    let rank1 = rank_pid(d, 1).expect("rank 1's process");
    // SAFETY: a plain kill(2) of a child process of this test.
    assert_eq!(unsafe { libc::kill(rank1, libc::SIGINT) }, 0);
    let out = wait_bounded(job, d, Duration::from_secs(120));
    let all = common::text(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let step: u64 = stdout
        .split("interrupted at step ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no interrupted step:\n{all}"));
    let ck = Checkpoint::load(&checkpoint).unwrap();
    assert_eq!(ck.info.step, step, "{all}");
    assert!(stdout.contains("ranks agree"), "{all}");
    // Each rank exits as an interrupted run does, having finalised MPI.
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(!all.contains("exiting improperly"), "{all}");
}

/// Waits for `job` (running in `dir`) at most `limit`; past it, kills it and its ranks and
/// fails, with what it printed.
fn wait_bounded(mut job: std::process::Child, dir: &Path, limit: Duration) -> std::process::Output {
    let started = Instant::now();
    while job.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            for r in 0..2 {
                if let Some(pid) = rank_pid(dir, r) {
                    // SAFETY: a plain kill(2) of a process of this test's job.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = job.kill();
            let out = job.wait_with_output().unwrap();
            panic!("the job still ran after {limit:?}:\n{}", common::text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    job.wait_with_output().unwrap()
}

/// `mpirun -np 2` (with `mca` options) of a run of a million steps into `dir/out`, checkpointing
/// every 2, once its first checkpoint is on disk; returns the job and the checkpoint's path.
fn long_job(dir: &Path, out: &str, mca: &[&str]) -> (std::process::Child, std::path::PathBuf) {
    let mut args = run_args(out, "1000000");
    args[12] = "2"; // --checkpoint-every 2
    let mut job = mpirun(2, mca)
        .args(&args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoint = dir.join(out).join("model.safetensors");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !checkpoint.exists() {
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        assert!(Instant::now() < deadline, "no checkpoint in 300 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (job, checkpoint)
}

/// The process of rank `r` of the job running in `dir`, from the variables Open MPI gives each
/// rank.
fn rank_pid(dir: &Path, r: usize) -> Option<i32> {
    let want = format!("OMPI_COMM_WORLD_RANK={r}");
    let bin = env!("CARGO_BIN_EXE_unroll");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).ok();
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        if exe.as_deref() != Some(Path::new(bin)) || cwd.as_deref() != Some(dir) {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}
