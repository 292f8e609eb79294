//! The real binary, given every mistake a user can make: each case checks the exit status and a
//! message that names the problem, and that no panic or raw wgpu error reaches the user.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn unroll() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unroll"));
    c.env("NO_COLOR", "1");
    c
}

mod common;
use common::text;

/// Runs unroll with `args`; asserts it fails with exit status 2 and says every one of `needles`.
fn fails_with(args: &[&str], needles: &[&str]) -> String {
    // A directory of its own: a run without --out writes to runs/default there, never into one
    // that another test's run holds.
    let cwd = tempfile::tempdir().unwrap();
    let out = unroll()
        .current_dir(cwd.path())
        .args(args)
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unroll {args:?} should fail with status 2:\n{all}"
    );
    for n in needles {
        assert!(
            all.contains(n),
            "unroll {args:?}: the message lacks `{n}`:\n{all}"
        );
    }
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "Validation Error",
        "Caused by",
    ] {
        assert!(
            !all.contains(bad),
            "unroll {args:?} printed `{bad}`:\n{all}"
        );
    }
    all
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A small trained checkpoint (CPU, a few steps) in `dir`.
fn checkpoint(dir: &Path) -> PathBuf {
    let out = unroll()
        .args([
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
        ])
        .args([
            "--iters",
            "4",
            "--eval-every",
            "2",
            "--log-every",
            "2",
            "--sample-len",
            "0",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    dir.join("model.safetensors")
}

fn train_cpu_on(path: &Path) -> Vec<String> {
    [
        "train",
        "--device",
        "cpu",
        "--quiet",
        "--iters",
        "2",
        "--data",
        path.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn data_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        &args(&train_cpu_on(&d.join("missing.txt"))),
        &["missing.txt", "no such file"],
    );
    fails_with(&args(&train_cpu_on(d)), &["is a directory"]);
    fails_with(
        &args(&train_cpu_on(Path::new("/proc/self/mem"))),
        &["/proc/self/mem", "cannot read"],
    );
    fails_with(
        &args(&train_cpu_on(&write(d, "empty.txt", b""))),
        &["is empty"],
    );
    let short = write(d, "short.txt", b"abcdefghij");
    let mut a = train_cpu_on(&short);
    a.extend(["--batch", "2", "--seq-len", "8"].map(String::from));
    fails_with(&args(&a), &["too short for 2 streams", "--seq-len"]);
    let bad = write(d, "latin1.txt", b"caf\xe9 au lait, caf\xe9 au lait");
    fails_with(
        &args(&train_cpu_on(&bad)),
        &["not valid UTF-8 at byte 3", "--bytes"],
    );
}

#[test]
fn bytes_mode_trains_on_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "latin1.txt", &b"caf\xe9 au lait, ".repeat(400));
    let out = unroll()
        .args([
            "train",
            "--device",
            "cpu",
            "--quiet",
            "--bytes",
            "--hidden",
            "8",
            "--batch",
            "4",
            "--seq-len",
            "8",
        ])
        .args(["--iters", "3", "--sample-len", "20", "--data"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn validation_fraction_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "t.txt", &b"hello world, ".repeat(200));
    for v in ["0", "1", "-0.5", "NaN"] {
        let mut a = train_cpu_on(&f);
        a.extend(["--val-fraction".into(), v.into()]);
        fails_with(&args(&a), &["validation fraction", "--val-fraction"]);
    }
    // A fraction that leaves too little held-out text for one chunk.
    let mut a = train_cpu_on(&f);
    a.extend(["--val-fraction", "0.005", "--seq-len", "32"].map(String::from));
    fails_with(&args(&a), &["validation data has", "--val-fraction"]);
}

#[test]
fn size_and_rate_errors() {
    let base = ["train", "--device", "cpu", "--quiet"];
    for (flag, value, needle) in [
        ("--hidden", "0", "hidden size is 0"),
        ("--seq-len", "0", "sequence length is 0"),
        ("--batch", "0", "batch size is 0"),
        ("--iters", "0", "number of steps is 0"),
        ("--hidden", "1000000", "hidden size 1000000 is too large"),
        ("--lr", "0", "learning rate 0 is not a positive number"),
        ("--lr", "-1", "learning rate -1 is not a positive number"),
        ("--lr", "NaN", "learning rate NaN is not a positive number"),
        ("--clip", "-1", "gradient clip"),
        ("--layers", "0", "number of layers (L) is 0"),
        ("--layers", "65", "65 layers are more than unroll stacks"),
        ("--dropout", "0.2", "dropout acts between stacked layers"),
        ("--dropout", "1", "dropout 1 is not a probability"),
    ] {
        let mut a = base.to_vec();
        a.extend([flag, value]);
        if flag != "--iters" {
            a.extend(["--iters", "2"]);
        }
        fails_with(&a, &[needle, "hint:"]);
    }
}

#[test]
fn sample_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ck = checkpoint(dir.path());
    let ck = ck.to_str().unwrap();
    fails_with(
        &["sample", "--checkpoint", ck, "--temperature", "-1"],
        &["temperature -1"],
    );
    fails_with(
        &["sample", "--checkpoint", ck, "--len", "0"],
        &["--len is 0"],
    );
    fails_with(
        &["sample", "--checkpoint", ck, "--prime", "€"],
        &["'€' is not in the model's vocabulary"],
    );
    let out = unroll()
        .args([
            "sample",
            "--checkpoint",
            ck,
            "--len",
            "30",
            "--temperature",
            "0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn checkpoint_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = checkpoint(&d.join("good"));
    let sample = |p: &Path| {
        vec![
            "sample".to_string(),
            "--checkpoint".into(),
            p.to_str().unwrap().into(),
        ]
    };
    fails_with(
        &args(&sample(&d.join("none.safetensors"))),
        &["no such checkpoint"],
    );
    let bytes = std::fs::read(&good).unwrap();
    let truncated = write(d, "truncated.safetensors", &bytes[..bytes.len() / 2]);
    fails_with(
        &args(&sample(&truncated)),
        &["not a readable safetensors file", "truncated"],
    );
    let text_file = write(d, "notes.safetensors", b"these are my notes, not a model");
    fails_with(
        &args(&sample(&text_file)),
        &["not a readable safetensors file"],
    );

    // Safetensors files from another program: one tensor each, with or without unroll's metadata.
    use unroll::tensorfile::{OwnedTensor, write_atomic};
    let file_of =
        |name: &str, tensor: OwnedTensor, meta: std::collections::HashMap<String, String>| {
            let path = d.join(name);
            write_atomic(&path, &[tensor], meta).unwrap();
            path
        };
    let foreign = file_of(
        "foreign.safetensors",
        OwnedTensor::f32("encoder.weight", vec![2, 2], &[0.0; 4]),
        Default::default(),
    );
    fails_with(&args(&sample(&foreign)), &["not an unroll checkpoint"]);
    let ck = unroll::checkpoint::Checkpoint::load(&good).unwrap();
    let meta: std::collections::HashMap<String, String> = [(
        "unroll".to_string(),
        serde_json::to_string(&ck.info).unwrap(),
    )]
    .into();
    let (i, h, u) = (
        ck.params.config.input,
        ck.params.config.hidden,
        ck.params.get("rnn.weight_ih_l0"),
    );
    let missing = file_of(
        "missing.safetensors",
        OwnedTensor::f32("rnn.weight_ih_l0", vec![h, i], u),
        meta.clone(),
    );
    fails_with(
        &args(&sample(&missing)),
        &["has no tensor `rnn.weight_hh_l0`"],
    );
    let shaped = file_of(
        "shaped.safetensors",
        OwnedTensor::f32("rnn.weight_ih_l0", vec![i, h], u),
        meta.clone(),
    );
    let expected = format!("has shape ({i}, {h}), expected ({h}, {i})");
    fails_with(&args(&sample(&shaped)), &["rnn.weight_ih_l0", &expected]);
    let as_u32: Vec<u32> = u.iter().map(|v| v.to_bits()).collect();
    let typed = file_of(
        "typed.safetensors",
        OwnedTensor::u32("rnn.weight_ih_l0", vec![h, i], &as_u32),
        meta,
    );
    fails_with(
        &args(&sample(&typed)),
        &["rnn.weight_ih_l0", "dtype U32, expected F32"],
    );

    // Resuming on text with a character the checkpoint's vocabulary lacks.
    let other = write(d, "other.txt", &b"Zebras zigzag. ".repeat(300));
    fails_with(
        &[
            "train",
            "--device",
            "cpu",
            "--quiet",
            "--resume",
            good.to_str().unwrap(),
            "--data",
            other.to_str().unwrap(),
        ],
        &["does not fit the checkpoint's vocabulary", "'Z'"],
    );
}

#[test]
fn adapter_errors() {
    fails_with(
        &["info", "--backend", "bogus"],
        &["unknown backend `bogus`", "vulkan, gl"],
    );
    fails_with(
        &["check", "--backend", "dx12"],
        &[
            "no GPU adapter found",
            "mesa-vulkan-drivers",
            "--device cpu",
        ],
    );
    fails_with(
        &["check", "--adapter", "no-such-adapter-anywhere"],
        &[
            "no adapter's name contains `no-such-adapter-anywhere`",
            "the adapters found are",
            "llvmpipe",
        ],
    );
}

#[test]
fn model_too_large_for_the_adapter() {
    // W alone is 8192² · 4 bytes = 256 MiB, twice the software adapters' 128 MiB binding limit.
    let all = fails_with(
        &[
            "train",
            "--quiet",
            "--hidden",
            "8192",
            "--batch",
            "4",
            "--seq-len",
            "8",
            "--iters",
            "1",
        ],
        &[
            "the parameters",
            "max_storage_buffer_binding_size of 134217728 bytes",
            "the largest settings that fit: H = ",
            "--device cpu",
        ],
    );
    // The largest hidden size named fits: its W is within the limit.
    let h: usize = all
        .split("H = ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        h.next_multiple_of(4).pow(2) * 4 <= 128 << 20 && h > 4000,
        "hint names H = {h}"
    );
}

#[test]
fn divergence_stops_with_the_step_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let all = fails_with(
        &[
            "train",
            "--quiet",
            "--hidden",
            "32",
            "--batch",
            "4",
            "--seq-len",
            "16",
            "--iters",
            "50",
            "--optimizer",
            "sgd",
            "--lr",
            "1e38",
            "--clip",
            "0",
            "--log-every",
            "1",
            "--checkpoint-every",
            "1",
            "--out",
            out,
        ],
        &[
            "training diverged at step",
            "a lower learning rate (--lr)",
            "--clip",
        ],
    );
    // The checkpoint of the last good step is on disk, whole and finite: never overwritten by
    // the diverged weights.
    let step: u64 = all
        .split("diverged at step ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ck = unroll::checkpoint::Checkpoint::load(&dir.path().join("model.safetensors")).unwrap();
    assert!(
        ck.info.step < step,
        "checkpoint of step {} after divergence at {step}",
        ck.info.step
    );
    assert!(ck.params.data.iter().all(|v| v.is_finite()), "{all}");
}

fn spawn_training(dir: &Path, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
        .args([
            "train",
            "--device",
            "cpu",
            "--quiet",
            "--batch",
            "4",
            "--seq-len",
            "16",
            "--iters",
            "1000000",
        ])
        .args([
            "--log-every",
            "1",
            "--eval-every",
            "1000000",
            "--sample-len",
            "0",
            "--out",
        ])
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has written `rows` metrics rows (at most a minute).
fn wait_for_steps(dir: &Path, rows: usize) {
    let start = std::time::Instant::now();
    while std::fs::read_to_string(dir.join("metrics.csv")).map_or(0, |s| s.lines().count())
        < rows + 1
    {
        // A bound only against a hang: a loaded machine may take minutes to compile the shaders.
        assert!(start.elapsed().as_secs() < 600, "training made no progress");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn kill(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn interrupt_writes_a_checkpoint_and_says_how_to_resume() {
    // The exit status says which signal stopped the run, as a shell reports it: 128 + its number.
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_training(dir.path(), &["--hidden", "16", "--checkpoint-every", "0"]);
        wait_for_steps(dir.path(), 3);
        kill(signal, child.id());
        let out = child.wait_with_output().unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(status), "SIG{signal}:\n{all}");
        assert!(
            all.contains("interrupted at step")
                && all.contains("resume with: unroll train --resume"),
            "{all}"
        );
        let ck =
            unroll::checkpoint::Checkpoint::load(&dir.path().join("model.safetensors")).unwrap();
        assert!(
            ck.info.step >= 3 && ck.info.step < 1_000_000,
            "step {}",
            ck.info.step
        );
        assert!(ck.optimizer.is_some() && ck.hidden.is_some());
    }
}

#[test]
fn kill_during_checkpoint_writes_leaves_the_last_checkpoint_readable() {
    let dir = tempfile::tempdir().unwrap();
    // A model whose checkpoint (parameters and two moments) is a few MiB, written every step.
    let extra = ["--hidden", "384", "--checkpoint-every", "1"];
    for round in 0..8u64 {
        let child = spawn_training(dir.path(), &extra);
        wait_for_steps(dir.path(), 1);
        std::thread::sleep(std::time::Duration::from_millis(37 * round));
        kill("KILL", child.id());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), None, "killed by a signal");
        let ck = unroll::checkpoint::Checkpoint::load(&dir.path().join("model.safetensors"));
        assert!(ck.is_ok(), "round {round}: {:?}", ck.err());
        std::fs::remove_file(dir.path().join("metrics.csv")).unwrap();
    }
    // A new run clears the temporary files the killed ones left.
    let mut child = spawn_training(dir.path(), &extra);
    wait_for_steps(dir.path(), 1);
    kill("INT", child.id());
    child.wait().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn second_interrupt_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Steps slow enough that the second signal arrives while the first step still runs.
    let child = spawn_training(dir.path(), &["--hidden", "1024", "--checkpoint-every", "0"]);
    wait_for_steps(dir.path(), 1);
    kill("INT", child.id());
    std::thread::sleep(std::time::Duration::from_millis(20));
    kill("INT", child.id());
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(all.contains("interrupted twice"), "{all}");
}

#[test]
fn csv_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let series = |p: &Path| {
        vec![
            "train", "--task", "series", "--device", "cpu", "--quiet", "--iters", "2", "--data",
        ]
        .into_iter()
        .map(String::from)
        .chain([p.to_str().unwrap().to_string()])
        .collect::<Vec<_>>()
    };
    fails_with(&args(&series(&write(d, "empty.csv", b""))), &["is empty"]);
    fails_with(
        &args(&series(&write(d, "blank.csv", b"\n\n"))),
        &["no rows"],
    );
    fails_with(
        &args(&series(&write(d, "ragged.csv", b"a,b\n1,2\n3\n4,5\n"))),
        &["row 3 has 1 cells, the header has 2"],
    );
    fails_with(
        &args(&series(&write(d, "text.csv", b"a,b\n1,2\n3,high\n4,5\n"))),
        &["row 3, column 2 (`b`): `high` is not a number"],
    );
    fails_with(
        &args(&series(&write(d, "hole.csv", b"1,2\n3,\n"))),
        &["row 2, column 2", "the cell is empty"],
    );
    fails_with(
        &args(&series(&write(d, "single.csv", b"a,b\n1,2\n"))),
        &["1 row of data", "at least 2"],
    );
    let ok = write(
        d,
        "ok.csv",
        &(0..50)
            .map(|i| format!("{i},{}\n", i * 2))
            .collect::<String>()
            .into_bytes(),
    );
    let mut a = series(&ok);
    a.extend(["--columns", "x"].map(String::from));
    fails_with(&args(&a), &["no column `x`", "the 2 columns are: `0`, `1`"]);
    fails_with(&args(&series(&ok)), &["too few for 32 streams"]);
}

#[test]
fn forecast_writes_a_csv_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv: String = std::iter::once("load,temp\n".to_string())
        .chain((0..600).map(|i| {
            format!(
                "{:.4},{:.4}\n",
                (i as f64 / 9.0).sin(),
                (i as f64 / 13.0).cos()
            )
        }))
        .collect();
    let data = write(d, "load.csv", csv.as_bytes());
    let out = unroll()
        .args([
            "train", "--task", "series", "--device", "cpu", "--quiet", "--hidden", "12", "--batch",
            "4",
        ])
        .args([
            "--seq-len",
            "16",
            "--iters",
            "20",
            "--data",
            data.to_str().unwrap(),
            "--out",
        ])
        .arg(d.join("run"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("repeat-last-value forecast"),
        "{}",
        text(&out)
    );
    let ck = d.join("run/model.safetensors");
    let fc = d.join("fc.csv");
    let out = unroll()
        .args([
            "forecast",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .args(["--horizon", "25", "--out", fc.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&fc).unwrap();
    assert_eq!(written.lines().next(), Some("load,temp"));
    assert_eq!(written.lines().count(), 26);
    assert!(
        std::fs::read_to_string(fc.with_extension("svg"))
            .unwrap()
            .contains("forecast")
    );
    // A text model has no forecast, a series model no text.
    let text_ck = checkpoint(&d.join("text"));
    fails_with(
        &["forecast", "--checkpoint", text_ck.to_str().unwrap()],
        &["not a series model"],
    );
    fails_with(
        &["sample", "--checkpoint", ck.to_str().unwrap()],
        &["no vocabulary"],
    );
    fails_with(
        &[
            "forecast",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--horizon",
            "0",
        ],
        &["horizon is 0"],
    );
}

/// A deterministic text of about 1.2 MB: sentences of common English words.
fn generated_text() -> String {
    let words = [
        "the", "a", "river", "ran", "past", "old", "mill", "and", "of", "light", "in", "winter",
        "she", "said", "that", "it", "was", "quiet", "when", "we", "walked", "home", "through",
        "snow", "under", "grey", "sky",
    ];
    let mut state = 0x2545_f491_u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut s = String::new();
    while s.len() < 1_200_000 {
        let n = 4 + next(9);
        let sentence: Vec<&str> = (0..n).map(|_| words[next(words.len())]).collect();
        let mut line = sentence.join(" ");
        line[..1].make_ascii_uppercase();
        s.push_str(&line);
        s.push_str(if next(5) == 0 { ".\n" } else { ". " });
    }
    s
}

#[test]
fn trains_on_a_megabyte_of_text_with_metrics_plot_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let book = generated_text();
    let data = write(dir.path(), "book.txt", book.as_bytes());
    assert!(std::fs::metadata(&data).unwrap().len() >= 1 << 20);
    let run = dir.path().join("run");
    let out = unroll()
        .args([
            "train",
            "--quiet",
            "--hidden",
            "64",
            "--batch",
            "16",
            "--seq-len",
            "32",
            "--iters",
            "60",
        ])
        .args([
            "--eval-every",
            "20",
            "--checkpoint-every",
            "30",
            "--data",
            data.to_str().unwrap(),
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("step 60: train loss") && all.contains("sample:"),
        "{all}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().next(),
        Some("step,train_loss,val_loss,tokens_per_s,elapsed_s")
    );
    assert_eq!(metrics.lines().count(), 1 + 6);
    assert!(
        std::fs::read_to_string(run.join("loss.svg"))
            .unwrap()
            .contains("<svg")
    );
    let ck = unroll::checkpoint::Checkpoint::load(&run.join("model.safetensors")).unwrap();
    assert_eq!(ck.info.step, 60);
    assert_eq!(
        ck.info.vocab.unwrap(),
        unroll::data::Vocab::from_text(&book),
        "the text's own characters"
    );
}

#[test]
fn check_exits_1_when_a_tensor_disagrees() {
    use unroll::tensorfile::{OwnedTensor, write_atomic};
    let dir = tempfile::tempdir().unwrap();
    let (i, h, b, t) = (3usize, 2usize, 1usize, 2usize);
    let f = |name: &str, shape: Vec<usize>, v: f32| {
        OwnedTensor::f32(name, shape.clone(), &vec![v; shape.iter().product()])
    };
    let mut tensors = vec![
        f("U", vec![h, i], 0.1),
        f("W", vec![h, h], -0.2),
        f("b", vec![h], 0.05),
        f("V", vec![i, h], 0.3),
        f("c", vec![i], 0.0),
        f("h0", vec![b, h], 0.0),
        OwnedTensor::u32("inputs", vec![t, b], &[0, 2]),
        OwnedTensor::u32("targets", vec![t, b], &[2, 1]),
    ];
    // All outputs are equal, so the loss is ln 3; the case claims 1.0.
    tensors.push(f("loss", vec![], 1.0));
    let case = dir.path().join("case.safetensors");
    write_atomic(&case, &tensors, Default::default()).unwrap();
    let out = unroll()
        .args(["check", "--device", "cpu", "--case", case.to_str().unwrap()])
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAIL") && all.contains("check FAILED"),
        "{all}"
    );
    assert!(
        all.contains("ref 1.000000000e0  got 1.098612"),
        "the worst element is shown:\n{all}"
    );
}

/// `bench --cell`: JSON rows for the Elman model and each cell with each ordering of the
/// recurrence (each with plain loads, and with subgroups where the adapter has them), with the
/// dispatches counted where they are recorded: ordered dispatches take one
/// per timestep, layer and pass, the grid a number that T does not change (H = 16, B = 3 make one
/// tile, whose grid barrier cannot fail: the grid rows ran the grid).
#[test]
fn bench_times_each_cell_against_the_elman_step() {
    let run = |t: usize| -> serde_json::Value {
        let out = unroll()
            .args([
                "bench",
                "--cell",
                "rnn,gru,lstm",
                "--layers",
                "2",
                "--steps",
                "2",
            ])
            .args(["--warmup", "1", "--json", "--config"])
            .arg(format!("16,3,{t}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (short, long) = (run(5), run(10));
    let rows = short.as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    // Each ordering with plain loads, and with subgroups where the adapter has them.
    let forms: &[&str] = match common::gpu().subgroups {
        true => &["ordered", "ordered, subgroups", "grid", "grid, subgroups"],
        false => &["ordered", "grid"],
    };
    let want: Vec<String> = ["elman", "rnn × 2", "gru × 2", "lstm × 2"]
        .iter()
        .flat_map(|m| forms.iter().map(move |f| format!("{m}, {f}")))
        .collect();
    assert_eq!(names, want);
    for (a, b) in rows.iter().zip(long.as_array().unwrap()) {
        assert!(a["median_ms"].as_f64().unwrap() > 0.0);
        assert!(a["check_max_rel_error"].as_f64().unwrap() < 1e-5);
        let grown =
            b["dispatches_per_step"].as_u64().unwrap() - a["dispatches_per_step"].as_u64().unwrap();
        assert_eq!(a["fallbacks"].as_u64(), Some(0), "{a}");
        // Five more timesteps: ordered, one dispatch per timestep, layer and pass; grid, none.
        let name = a["variant"].as_str().unwrap();
        let per_step = match (name.starts_with("elman"), name.contains("ordered")) {
            (_, false) => 0,
            (true, true) => 2,
            (false, true) => 2 * 2,
        };
        assert_eq!(grown, 5 * per_step, "{a}\n{b}");
    }
}

#[test]
fn check_compares_a_generated_stacked_model_on_both_devices() {
    for device in ["gpu", "cpu"] {
        let out = unroll()
            .args([
                "check", "--cell", "lstm", "--layers", "2", "--hidden", "7", "--input", "11",
            ])
            .args([
                "--batch",
                "2",
                "--steps",
                "3",
                "--random-h0",
                "--device",
                device,
            ])
            .output()
            .unwrap();
        // What the program means is on stdout; a driver may print anything on stderr.
        let all = text(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{all}");
        assert!(
            stdout.contains("grad.rnn.weight_hh_l1") && stdout.contains("grad.c0"),
            "{all}"
        );
        assert!(stdout.ends_with("check passed\n"), "{all}");
    }
}

/// A stacked gated model through the whole tool: trained on the GPU with dropout, its checkpoint
/// sampled (the CPU stepper runs every layer and the LSTM's c), resumed on the CPU, and a GRU
/// series model forecast.
#[test]
fn stacked_models_train_sample_resume_and_forecast() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = d.join("lstm");
    let out = unroll()
        .args([
            "train",
            "--cell",
            "lstm",
            "--layers",
            "2",
            "--dropout",
            "0.1",
            "--hidden",
            "16",
        ])
        .args([
            "--batch",
            "4",
            "--seq-len",
            "8",
            "--iters",
            "6",
            "--quiet",
            "--sample-len",
            "20",
        ])
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("(lstm × 2)"), "{all}");
    let ck = run.join("model.safetensors");
    let f = unroll::tensorfile::TensorFile::open(&ck).unwrap();
    assert_eq!(f.floats("state.cell", None).unwrap().0, [2, 4, 16]);
    assert_eq!(f.floats("rnn.weight_hh_l1", None).unwrap().0, [64, 16]);
    let out = unroll()
        .args(["sample", "--len", "40", "--prime", "1", "--checkpoint"])
        .arg(&ck)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).chars().count() >= 41);
    let out = unroll()
        .args([
            "train", "--device", "cpu", "--quiet", "--iters", "8", "--resume",
        ])
        .arg(&ck)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        unroll::checkpoint::Checkpoint::load(&ck).unwrap().info.step,
        8
    );
    // A resumed run keeps its cell: asking for another is refused.
    fails_with(
        &["train", "--cell", "gru", "--resume", ck.to_str().unwrap()],
        &["--cell"],
    );
    let series = d.join("gru");
    let out = unroll()
        .args([
            "train", "--task", "series", "--cell", "gru", "--layers", "2", "--hidden", "8",
        ])
        .args([
            "--batch",
            "4",
            "--seq-len",
            "8",
            "--iters",
            "6",
            "--quiet",
            "--out",
        ])
        .arg(&series)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let fc = d.join("fc.csv");
    let out = unroll()
        .args(["forecast", "--horizon", "7", "--checkpoint"])
        .arg(series.join("model.safetensors"))
        .arg("--out")
        .arg(&fc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&fc).unwrap().lines().count(), 8);
}
