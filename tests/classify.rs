//! `unroll train --task classify` end to end on the CPU reference: labelled sequences of a
//! `.ts` file or of `label<TAB>text` lines, the accuracy and the confusion it reports and
//! writes, resuming bit for bit, and the flags that do not apply.

mod common;

use std::path::{Path, PathBuf};
use unroll::checkpoint::Checkpoint;
use unroll::model::Head;
use unroll::train::{Device, Resume, RunOptions, Task, TrainConfig, train};

/// A `.ts` file of `n` sequences of 2 channels and lengths 3 to 17: class 0 rises, class 1
/// falls, class 2 oscillates; a little noise from a fixed rule.
fn write_ts(path: &Path, n: usize, offset: usize) {
    let mut text = String::from(
        "# made by a test\n@problemName Shapes\n@dimensions 2\n@equalLength false\n\
         @classLabel true rise fall wave\n@data\n",
    );
    for i in offset..offset + n {
        let (class, len) = (i % 3, 3 + (i * 7) % 15);
        let value = |t: usize, c: usize| -> f32 {
            let x = t as f32 / len as f32;
            let noise = (((i * 31 + t * 17 + c * 5) % 11) as f32 - 5.0) * 0.02;
            let v = match class {
                0 => x,
                1 => 1.0 - x,
                _ => (6.0 * x).sin() * 0.5 + 0.5,
            };
            v * if c == 0 { 1.0 } else { 3.0 } + noise + 10.0 * c as f32
        };
        let channel = |c: usize| -> String {
            (0..len)
                .map(|t| value(t, c).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        text += &format!(
            "{}:{}:{}\n",
            channel(0),
            channel(1),
            ["rise", "fall", "wave"][class]
        );
    }
    std::fs::write(path, text).unwrap();
}

fn data(dir: &Path) -> (PathBuf, PathBuf) {
    let (train, test) = (dir.join("shapes_TRAIN.ts"), dir.join("shapes_TEST.ts"));
    write_ts(&train, 60, 0);
    write_ts(&test, 30, 1000);
    (train, test)
}

fn config(train: &Path, val: Option<&Path>, iters: u64) -> TrainConfig {
    TrainConfig {
        task: Task::Classify,
        data: Some(train.to_owned()),
        val: val.map(Path::to_owned),
        hidden: 16,
        batch: 8,
        iters,
        eval_every: 20,
        log_every: 10,
        checkpoint_every: 0,
        cell: unroll::Cell::Gru,
        ..TrainConfig::default()
    }
}

fn opts(dir: &Path) -> RunOptions {
    RunOptions {
        out_dir: dir.to_owned(),
        force: false,
        max_bytes: unroll::data::DEFAULT_MAX_BYTES,
        self_check: false,
        device: Device::Cpu,
        adapter: unroll::gpu::AdapterChoice::default(),
        recurrence: None,
        tune: unroll::tune::Tuning::off(),
        resume: None,
        quiet: true,
        interrupt: None,
        accumulate: 1,
        devices: Vec::new(),
        job: None,
    }
}

#[test]
fn a_classifier_learns_and_reports_its_accuracy_and_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let (train_ts, test_ts) = data(dir.path());
    let run = dir.path().join("run");
    for (bidirectional, device) in [
        (false, Device::Cpu),
        (true, Device::Cpu),
        (true, Device::Gpu),
    ] {
        let cfg = TrainConfig {
            bidirectional,
            ..config(&train_ts, Some(&test_ts), 400)
        };
        let s = train(
            &cfg,
            &RunOptions {
                force: true,
                device,
                ..opts(&run)
            },
        )
        .unwrap();
        let c = s.classified.clone().expect("a classifier's summary");
        assert_eq!(c.classes, ["rise", "fall", "wave"]);
        // The three shapes are told apart: well above chance (1/3), and the loss below the
        // class frequencies'.
        assert!(c.accuracy >= 0.9, "bidirectional {bidirectional}: {c:?}");
        assert!(
            (s.val_loss as f64) < s.baseline_loss / 2.0,
            "{} vs {}",
            s.val_loss,
            s.baseline_loss
        );
        // The confusion counts every test sequence once, and its diagonal is the accuracy.
        let total: u64 = c.confusion.iter().flatten().sum();
        let right: u64 = (0..3).map(|k| c.confusion[k][k]).sum();
        assert_eq!(total, 30);
        assert_eq!(right as f64 / 30.0, c.accuracy);
        // The files say the same.
        let (confusion, per_class) = c.files.clone().unwrap();
        let per_class = std::fs::read_to_string(per_class).unwrap();
        assert!(
            per_class.starts_with("class,sequences,correct,accuracy\nrise,10,"),
            "{per_class}"
        );
        let pairs = std::fs::read_to_string(confusion).unwrap();
        let sum: u64 = pairs
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!((pairs.lines().count(), sum), (10, 30));
        let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        assert!(metrics.starts_with(
            "step,train_loss,val_loss,tokens_per_s,elapsed_s,val_accuracy,train_accuracy\n"
        ));
        let last: Vec<f64> = metrics
            .lines()
            .last()
            .unwrap()
            .rsplit(',')
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(last, [c.train_accuracy.unwrap(), c.accuracy]);
        // The checkpoint is a bidirectional GRU with the last head, its classes and scaling.
        let ck = Checkpoint::load(&s.checkpoint).unwrap();
        assert_eq!(ck.params.config.head, Head::Last);
        assert_eq!(ck.params.config.bidirectional, bidirectional);
        let classes = ck.info.classes.unwrap();
        assert_eq!(classes.names, c.classes);
        let stats = classes.channels.unwrap();
        assert!(
            (stats.mean[1] - 10.0).abs() > 0.5 && stats.mean[1] > 9.0,
            "{stats:?}"
        );
    }
}

#[test]
fn a_classification_run_resumes_bit_for_bit_on_the_cpu_and_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let (train_ts, _) = data(dir.path());
    for device in [Device::Cpu, Device::Gpu] {
        let (straight, split) = (dir.path().join("a"), dir.path().join("b"));
        let opts = |dir: &Path| RunOptions {
            device,
            force: true,
            ..opts(dir)
        };
        let cfg = TrainConfig {
            bidirectional: true,
            head: Head::Mean,
            cell: unroll::Cell::Lstm,
            layers: 2,
            dropout: 0.2,
            ..config(&train_ts, None, 40)
        };
        let whole = train(&cfg, &opts(&straight)).unwrap();
        train(
            &TrainConfig {
                iters: 20,
                ..cfg.clone()
            },
            &opts(&split),
        )
        .unwrap();
        let mut o = opts(&split);
        o.force = false;
        o.resume = Some(Resume {
            iters: Some(40),
            ..Resume::from(split.join("model.safetensors"))
        });
        let resumed = train(&cfg, &o).unwrap();
        let (a, b) = (
            Checkpoint::load(&whole.checkpoint).unwrap(),
            Checkpoint::load(&resumed.checkpoint).unwrap(),
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.params.data), bits(&b.params.data), "{device:?}");
        assert_eq!(whole.val_loss.to_bits(), resumed.val_loss.to_bits());
        assert_eq!(a.info.classes, b.info.classes);
    }
}

#[test]
fn a_resumed_run_widens_the_rows_of_an_older_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let (train_ts, _) = data(dir.path());
    let run = dir.path().join("run");
    let cfg = config(&train_ts, None, 20);
    train(&cfg, &opts(&run)).unwrap();
    // The file as an earlier version wrote it: no training accuracy.
    let metrics = run.join("metrics.csv");
    let old = std::fs::read_to_string(&metrics).unwrap();
    let mut lines = old.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with(",val_accuracy,train_accuracy")
    );
    let mut older = "step,train_loss,val_loss,tokens_per_s,elapsed_s,val_accuracy\n".to_string();
    for line in lines {
        older += &line[..line.rfind(',').unwrap()];
        older.push('\n');
    }
    std::fs::write(&metrics, &older).unwrap();
    let mut o = opts(&run);
    o.resume = Some(Resume {
        iters: Some(40),
        ..Resume::from(run.join("model.safetensors"))
    });
    train(&cfg, &o).unwrap();
    let new = std::fs::read_to_string(&metrics).unwrap();
    let widths: Vec<usize> = new.lines().map(|l| l.split(',').count()).collect();
    assert!(widths.iter().all(|&w| w == 7), "{new}");
    // Two rows (steps 10 and 20) kept from the older file, two written after them.
    assert_eq!(widths.len(), 1 + 4, "{new}");
    assert!(new.lines().nth(2).unwrap().ends_with(','), "{new}");
}

#[test]
fn text_lines_classify_by_their_characters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let mut text = String::new();
    for i in 0..90 {
        let (label, body) = match i % 3 {
            0 => ("vowels", "aeiou"),
            1 => ("digits", "0123456789"),
            _ => ("marks", ".,;:!?"),
        };
        let len = 2 + i % 7;
        let s: String = (0..len)
            .map(|t| body.as_bytes()[(i + t * 3) % body.len()] as char)
            .collect();
        text += &format!("{label}\t{s}\n");
    }
    std::fs::write(&path, text).unwrap();
    let cfg = TrainConfig {
        val_fraction: 0.2,
        ..config(&path, None, 120)
    };
    let s = train(&cfg, &opts(&dir.path().join("run"))).unwrap();
    let c = s.classified.unwrap();
    assert_eq!(c.classes, ["digits", "marks", "vowels"]);
    assert!(c.accuracy >= 0.95, "{c:?}");
    // The held-out fifth, stratified: six of each class.
    assert!(
        c.confusion.iter().all(|row| row.iter().sum::<u64>() == 6),
        "{c:?}"
    );
    let ck = Checkpoint::load(&s.checkpoint).unwrap();
    assert!(ck.info.vocab.is_some() && ck.info.classes.unwrap().channels.is_none());
}

#[test]
fn flags_that_do_not_apply_to_a_classifier_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (train_ts, test_ts) = data(dir.path());
    let (t, v) = (train_ts.to_str().unwrap(), test_ts.to_str().unwrap());
    let base = [
        "train", "--task", "classify", "--device", "cpu", "--data", t, "--iters", "2",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    for (extra, needle) in [
        (vec!["--seq-len", "5"], "--seq-len does not apply"),
        (vec!["--sample-len", "5"], "--sample-len does not apply"),
        (vec!["--head", "per-step"], "--head per-step does not apply"),
        (
            vec!["--accumulate", "2"],
            "whole sequences train on one device",
        ),
        (vec!["--columns", "a"], "--columns does not apply"),
    ] {
        common::fails_in(dir.path(), &with(&base, &extra), &[needle]);
    }
    for (args, needle) in [
        (
            vec!["train", "--device", "cpu", "--bidirectional"],
            "--bidirectional does not apply",
        ),
        (
            vec!["train", "--device", "cpu", "--val", v],
            "--val does not apply",
        ),
        (
            vec!["train", "--task", "classify", "--device", "cpu"],
            "has no built-in data",
        ),
    ] {
        common::fails_in(dir.path(), &args, &[needle]);
    }
    // A validation file of another problem.
    let other = dir.path().join("other.ts");
    std::fs::write(&other, "@classLabel true x y\n@data\n1,2:x\n").unwrap();
    let o = other.to_str().unwrap();
    common::fails_in(
        dir.path(),
        &with(&base, &["--val", o]),
        &["declares the classes x y"],
    );
}

#[test]
fn predict_writes_what_the_run_measured() {
    let dir = tempfile::tempdir().unwrap();
    let (train_ts, test_ts) = data(dir.path());
    let run = dir.path().join("run");
    let cfg = TrainConfig {
        bidirectional: true,
        ..config(&train_ts, Some(&test_ts), 100)
    };
    let s = train(&cfg, &opts(&run)).unwrap();
    let c = s.classified.unwrap();
    let out = dir.path().join("predictions.csv");
    let ck = run.join("model.safetensors");
    let args = |out: &Path| {
        vec![
            "predict".to_string(),
            "--checkpoint".into(),
            ck.display().to_string(),
            "--data".into(),
            test_ts.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let text = common::succeeds_in(dir.path(), &as_strs(&args(&out)));
    assert!(text.contains("30 sequences classified"), "{text}");
    let csv = std::fs::read_to_string(&out).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("sequence,true_class,predicted_class,p_rise,p_fall,p_wave")
    );
    let mut right = 0;
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], i.to_string());
        let p: Vec<f64> = cells[3..].iter().map(|v| v.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{line}");
        let best = (0..3).fold(0, |a, k| if p[k] > p[a] { k } else { a });
        assert_eq!(cells[2], ["rise", "fall", "wave"][best], "{line}");
        right += (cells[1] == cells[2]) as usize;
    }
    // The same model on the same file: the run's last evaluation, sequence for sequence.
    assert_eq!(right as f64 / 30.0, c.accuracy);
    // And on the training file (the run's training split, --val given): its training accuracy.
    let on_train = dir.path().join("on_train.csv");
    let mut a = args(&on_train);
    a[4] = train_ts.display().to_string();
    common::succeeds_in(dir.path(), &as_strs(&a));
    let csv = std::fs::read_to_string(&on_train).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let right = rows.iter().filter(|r| r[1] == r[2]).count();
    assert_eq!(Some(right as f64 / rows.len() as f64), c.train_accuracy);
    // On the GPU: the reference's probabilities within float32's rounding, sequence for sequence.
    let on_gpu = dir.path().join("on_gpu.csv");
    let gpu_args = |extra: &[&str]| {
        let mut a = args(&on_gpu);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    common::succeeds_in(dir.path(), &as_strs(&gpu_args(&["--device", "gpu"])));
    let probabilities = |p: &Path| -> Vec<f64> {
        let csv = std::fs::read_to_string(p).unwrap();
        let rows = csv.lines().skip(1).map(|l| {
            l.split(',')
                .skip(3)
                .map(|v| v.parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        });
        rows.flatten().collect()
    };
    let (gpu, cpu) = (probabilities(&on_gpu), probabilities(&out));
    assert_eq!(gpu.len(), 30 * 3);
    let worst = gpu
        .iter()
        .zip(&cpu)
        .map(|(g, c)| (g - c).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-5,
        "the GPU's probabilities are {worst:e} off the reference's"
    );
    // An adapter's flag where the CPU reference predicts is refused.
    let refused = &["--backend does not apply here: --device cpu predicts with the CPU reference"];
    common::fails_in(
        dir.path(),
        &as_strs(&gpu_args(&["--backend", "vulkan"])),
        refused,
    );
    // It replaces its own file, never another.
    common::succeeds_in(dir.path(), &as_strs(&args(&out)));
    let foreign = dir.path().join("mine.csv");
    std::fs::write(&foreign, "a,b\n").unwrap();
    let refused = &["is not predictions of `unroll predict`"];
    common::fails_in(dir.path(), &as_strs(&args(&foreign)), refused);
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "a,b\n");
    let refused = &["is an input of the prediction"];
    common::fails_in(dir.path(), &as_strs(&args(&test_ts)), refused);
    // A next-step model's checkpoint is no classifier.
    let text_run = dir.path().join("text");
    train(
        &TrainConfig {
            iters: 2,
            sample_len: 0,
            hidden: 8,
            ..TrainConfig::default()
        },
        &opts(&text_run),
    )
    .unwrap();
    let ck2 = text_run.join("model.safetensors").display().to_string();
    let t = test_ts.display().to_string();
    common::fails_in(
        dir.path(),
        &[
            "predict",
            "--checkpoint",
            &ck2,
            "--data",
            &t,
            "--out",
            "p.csv",
        ],
        &["is not a classifier's"],
    );
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
