//! The tuner (src/tune.rs) and its cache (src/tune_cache.rs). Every variant a full tuning times
//! computes the default variant's step bit for bit (every cell, L = 1–3, tokens and dense, odd
//! sizes, T = 1, B = 1, both directions with mixed lengths), so a tuned choice changes the speed
//! and never the bits. The cache: a tuning is stored and read back (no tuning, the same choice),
//! a full tuning supersedes a quick one, `off` touches nothing, and a damaged or foreign file
//! gives a warning and a fresh tuning, and is left byte for byte as it was.

mod common;

use std::time::Duration;
use unroll::case::{Case, RandomCase};
use unroll::cell::Cell;
use unroll::gpu::{Gpu, Kernels, ModelStep, Products, Recurrence};
use unroll::model::ModelConfig;
use unroll::tune::{Origin, Target, TuneMode, Tuned, default_variant, tune, tune_within};
use unroll::tune_cache::{Key, MARK};

fn target(config: ModelConfig, shape: (usize, usize)) -> Target {
    Target {
        config,
        shape,
        recurrence: None,
    }
}

/// The bits of one step of `case` run as each variant `tuned` timed, and as the default.
fn assert_same_bits(gpu: &Gpu, kernels: &Kernels, case: &Case, tuned: &Tuned) {
    let (c, b) = (case.params.config, &case.batch);
    let run = |v: &unroll::gpu::Variant| {
        let step = ModelStep::new(gpu, kernels, c, (b.batch, b.steps), v.options()).unwrap();
        let out = step.run_and_read(gpu, &case.params.cast(), b).unwrap();
        assert_eq!(step.recurrence(), v.recurrence, "{}: fell back", v.name());
        common::bits(&out)
    };
    let t = target(c, (b.batch, b.steps));
    let want = run(&default_variant(gpu, &t).unwrap());
    for timing in &tuned.timings {
        assert!(
            run(&timing.variant) == want,
            "{c}, B={} T={}: variant {} computes other bits than the default",
            b.batch,
            b.steps,
            timing.variant.name()
        );
    }
}

#[test]
fn every_variant_a_full_tuning_times_computes_the_defaults_bits() {
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu.device);
    let dense = |h| ModelConfig::dense(3, h, 2);
    let mut bidirectional = ModelConfig::tokens(11, 9).with_cell(Cell::Lstm, 2);
    bidirectional.bidirectional = true;
    let cases = [
        (ModelConfig::tokens(11, 13), (5, 9)),
        (dense(21).with_cell(Cell::Gru, 2), (6, 7)),
        (ModelConfig::tokens(7, 37).with_cell(Cell::Lstm, 3), (3, 5)),
        (dense(8).with_cell(Cell::RnnRelu, 1), (1, 1)),
        (ModelConfig::tokens(11, 16).with_cell(Cell::Gru, 1), (9, 1)),
        (bidirectional, (4, 6)),
    ];
    let mut products = std::collections::HashSet::new();
    for (i, (config, (batch, steps))) in cases.into_iter().enumerate() {
        let tuned = tune(&gpu, &target(config, (batch, steps)), TuneMode::Full, None).unwrap();
        assert!(tuned.warnings.is_empty(), "{config}: {:?}", tuned.warnings);
        assert!(
            tuned.timings.len() >= 3,
            "{config}: a full tuning timed {} variants",
            tuned.timings.len()
        );
        assert!(matches!(tuned.origin, Origin::Tuned { stored: None, .. }));
        for t in &tuned.timings {
            products.insert(format!("{:?}", t.variant.products));
            assert!(t.median_ms > 0.0 && t.timed_steps == 5, "{t:?}");
        }
        let settings = RandomCase {
            batch,
            steps,
            seed: 60 + i as u64,
            init_scale: None,
            random_state: true,
        };
        let mut case = Case::random(config, settings).unwrap();
        if config.bidirectional {
            case.batch.lengths = Some(vec![6, 1, 4, 5]);
        }
        assert_same_bits(&gpu, &kernels, &case, &tuned);
    }
    assert_eq!(products.len(), 2, "both product kernels were timed");
}

/// The tuned model of the cache tests: small, so a tuning takes a moment.
fn small() -> Target {
    target(ModelConfig::tokens(9, 12).with_cell(Cell::Gru, 1), (3, 4))
}

fn cache_file(gpu: &Gpu, dir: &std::path::Path, t: &Target) -> std::path::PathBuf {
    dir.join(Key::new(&gpu.info, t.config, t.shape, t.recurrence).file_name())
}

#[test]
fn a_tuning_is_stored_and_read_back_and_a_full_one_supersedes_a_quick_one() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("nested/unroll");
    let t = small();
    let off = tune(&gpu, &t, TuneMode::Off, Some(&cache)).unwrap();
    assert_eq!(off.origin, Origin::Default);
    assert!(!cache.exists(), "--tune off wrote to the cache");

    let first = tune(&gpu, &t, TuneMode::Quick, Some(&cache)).unwrap();
    let path = cache_file(&gpu, &cache, &t);
    assert!(
        matches!(&first.origin, Origin::Tuned { stored: Some(p), .. } if *p == path),
        "{:?}",
        first.origin
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(MARK), "{text}");
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);

    let again = tune(&gpu, &t, TuneMode::Quick, Some(&cache)).unwrap();
    assert_eq!(again.origin, Origin::Cached(path.clone()));
    assert_eq!(again.variant, first.variant);
    assert_eq!(again.timings, first.timings);

    // A quick choice does not answer a full tuning; the full one replaces it and answers both.
    let full = tune(&gpu, &t, TuneMode::Full, Some(&cache)).unwrap();
    assert!(matches!(&full.origin, Origin::Tuned { stored: Some(p), .. } if *p == path));
    assert!(full.timings.len() > first.timings.len());
    for mode in [TuneMode::Quick, TuneMode::Full] {
        let read = tune(&gpu, &t, mode, Some(&cache)).unwrap();
        assert_eq!(read.origin, Origin::Cached(path.clone()));
        assert_eq!(read.variant, full.variant);
    }
    // Nothing but the one file (no temporary left behind).
    let names: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // Another ordering asked for is another key, another file.
    let ordered = Target {
        recurrence: Some(Recurrence::Ordered),
        ..t
    };
    let other = tune(&gpu, &ordered, TuneMode::Quick, Some(&cache)).unwrap();
    assert!(matches!(
        other.origin,
        Origin::Tuned {
            stored: Some(_),
            ..
        }
    ));
    assert_eq!(other.variant.recurrence, Recurrence::Ordered);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
}

#[test]
fn a_damaged_or_foreign_cache_file_is_warned_of_tuned_past_and_left_as_it_was() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let t = small();
    let path = cache_file(&gpu, dir.path(), &t);
    let contents: [&[u8]; 5] = [
        b"",
        b"\x00\xffnot json at all",
        br#"{"written_by": "someone else", "format": 1}"#,
        br#"{"written_by": "unroll tuning cache", "format": 1, "key": 7}"#,
        br#"[1, 2, 3]"#,
    ];
    for bytes in contents {
        std::fs::write(&path, bytes).unwrap();
        let tuned = tune(&gpu, &t, TuneMode::Quick, Some(dir.path())).unwrap();
        assert!(
            matches!(tuned.origin, Origin::Tuned { stored: None, .. }),
            "{:?}: {:?}",
            String::from_utf8_lossy(bytes),
            tuned.origin
        );
        let warned = tuned.warnings.join("\n");
        assert!(
            warned.contains(&path.display().to_string()) && warned.contains("leaving that file"),
            "{warned}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was changed");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
    // A link to unroll's own file for this key: not a file unroll wrote there.
    std::fs::remove_file(&path).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let real = tune(&gpu, &t, TuneMode::Quick, Some(elsewhere.path())).unwrap();
    let Origin::Tuned {
        stored: Some(real), ..
    } = real.origin
    else {
        panic!("{:?}", real.origin)
    };
    let before = std::fs::read(&real).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let tuned = tune(&gpu, &t, TuneMode::Full, Some(dir.path())).unwrap();
        assert!(matches!(tuned.origin, Origin::Tuned { stored: None, .. }));
        assert!(
            tuned.warnings.join("\n").contains("is a link"),
            "{:?}",
            tuned.warnings
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read(&real).unwrap(),
            before,
            "the link's target was changed"
        );
        std::fs::remove_file(&path).unwrap();
    }
    // A directory where the file would be: the same.
    std::fs::create_dir(&path).unwrap();
    let tuned = tune(&gpu, &t, TuneMode::Quick, Some(dir.path())).unwrap();
    assert!(matches!(tuned.origin, Origin::Tuned { stored: None, .. }));
    assert!(path.is_dir());
}

#[test]
fn unrolls_own_file_for_another_key_or_format_is_replaced() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let t = small();
    let path = cache_file(&gpu, dir.path(), &t);
    // unroll's file for another model, placed under this key's name.
    let other = target(ModelConfig::tokens(5, 8), (2, 2));
    let tuned = tune(&gpu, &other, TuneMode::Quick, Some(dir.path())).unwrap();
    let Origin::Tuned {
        stored: Some(theirs),
        ..
    } = tuned.origin
    else {
        panic!("{:?}", tuned.origin)
    };
    std::fs::rename(&theirs, &path).unwrap();
    let mine = tune(&gpu, &t, TuneMode::Quick, Some(dir.path())).unwrap();
    assert!(mine.warnings.join("\n").contains("another model"));
    assert!(matches!(&mine.origin, Origin::Tuned { stored: Some(p), .. } if *p == path));
    let read = tune(&gpu, &t, TuneMode::Quick, Some(dir.path())).unwrap();
    assert_eq!(read.origin, Origin::Cached(path.clone()));
    // Another format of unroll's.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"format\": 1", "\"format\": 99")).unwrap();
    let newer = tune(&gpu, &t, TuneMode::Quick, Some(dir.path())).unwrap();
    assert!(newer.warnings.join("\n").contains("another format"));
    assert!(matches!(
        newer.origin,
        Origin::Tuned {
            stored: Some(_),
            ..
        }
    ));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"format\": 1")
    );
}

#[test]
fn a_quick_tuning_times_the_default_and_the_variants_one_choice_away_within_its_budget() {
    let gpu = common::gpu();
    let t = small();
    let base = default_variant(&gpu, &t).unwrap();
    // A budget no machine spends here: every quick candidate is timed.
    let ample = Some(Duration::from_secs(600));
    let tuned = tune_within(&gpu, &t, TuneMode::Quick, None, ample).unwrap();
    let timed: Vec<_> = tuned.timings.iter().map(|t| t.variant).collect();
    assert!(timed.contains(&base), "{timed:?}");
    let tiled = unroll::gpu::Variant {
        products: Products::Tiled,
        ..base
    };
    assert!(timed.contains(&tiled), "{timed:?}");
    for v in &timed {
        let away = [
            v.recurrence != base.recurrence,
            v.subgroups != base.subgroups,
            v.products != base.products,
            v.tiles != base.tiles,
        ];
        assert!(away.iter().filter(|&&d| d).count() <= 1, "{v:?}");
        assert_eq!(tuned.timings[0].timed_steps, 3);
    }
    // A budget spent before it starts: the default alone, timed once.
    let none = tune_within(&gpu, &t, TuneMode::Quick, None, Some(Duration::ZERO)).unwrap();
    assert_eq!(none.timings.len(), 1, "{:?}", none.timings);
    assert_eq!(none.timings[0].variant, base);
    assert_eq!(none.timings[0].timed_steps, 1);
    assert_eq!(none.variant, base);
}

#[test]
fn the_wgpu_version_in_the_cache_key_is_the_one_built_with() {
    let manifest = include_str!("../Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.starts_with("wgpu = "))
        .expect("Cargo.toml names wgpu");
    let want = format!("version = \"{}\"", unroll::tune_cache::WGPU_VERSION);
    assert!(line.contains(&want), "{line} against {want}");
}

/// Runs `unroll` with `cache` as XDG_CACHE_HOME (None: neither it nor HOME set, as in a bare
/// shell); returns (exit code, stdout, stderr).
fn unroll_with_cache(
    cwd: &std::path::Path,
    cache: Option<&std::path::Path>,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"));
    cmd.current_dir(cwd).args(args);
    match cache {
        Some(c) => cmd.env("XDG_CACHE_HOME", c),
        None => cmd.env_remove("XDG_CACHE_HOME").env_remove("HOME"),
    };
    let out = cmd.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

const BENCH: [&str; 9] = [
    "bench", "--config", "16,4,8", "--no-cpu", "--steps", "2", "--warmup", "1", "--tune",
];

#[test]
fn bench_tune_full_writes_the_cache_and_a_second_run_reads_it() {
    let _ = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let args = |mode: &'static str| [&BENCH[..], &[mode]].concat();
    let (code, out, err) = unroll_with_cache(dir.path(), Some(&cache), &args("full"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("16,4,8 elman: variant: ") && out.contains("tuned in"),
        "{out}"
    );
    assert!(
        out.contains("median ms") && out.contains("tiled") && out.contains("blocked"),
        "{out}"
    );
    let files: Vec<_> = std::fs::read_dir(cache.join("unroll"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let chosen = out
        .lines()
        .next()
        .unwrap()
        .split(" (")
        .next()
        .unwrap()
        .to_string();

    let (code, again, err) = unroll_with_cache(dir.path(), Some(&cache), &args("full"));
    assert_eq!(code, 0, "{again}{err}");
    let first = again.lines().next().unwrap();
    assert!(
        first.starts_with(&chosen) && first.contains("read from"),
        "{first} against {chosen}"
    );
    // The benchmark's row names the variant it ran (JSON).
    let (code, json, err) = unroll_with_cache(
        dir.path(),
        Some(&cache),
        &[&args("quick")[..], &["--json"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ran = rows[0]["variant"].as_str().unwrap();
    assert!(chosen.ends_with(ran), "{chosen} against {ran}");

    // A damaged file: a warning, a fresh tuning, the file as it was.
    std::fs::write(&files[0], b"{ damaged").unwrap();
    let (code, out, err) = unroll_with_cache(dir.path(), Some(&cache), &args("quick"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: ") && err.contains("leaving that file as it is"),
        "{err}"
    );
    assert!(
        out.contains("tuned in") && out.contains("not stored"),
        "{out}"
    );
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"{ damaged");

    // Off: no tuning, no file read or written.
    let (code, out, err) = unroll_with_cache(dir.path(), Some(&cache), &args("off"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(--tune off)") && !err.contains("warning"),
        "{out}{err}"
    );
    assert_eq!(std::fs::read_dir(cache.join("unroll")).unwrap().count(), 1);
}

#[test]
fn train_tunes_into_the_cache_and_runs_without_one() {
    let _ = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    fn run<'a>(out: &'a str, tune: &'a str) -> Vec<&'a str> {
        let mut a = common::short_run(out, "12", "4");
        a.retain(|&x| x != "--quiet");
        [&a[..], &["--tune", tune]].concat()
    }
    let (code, out, err) = unroll_with_cache(dir.path(), Some(&cache), &run("a", "quick"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("variant: ") && err.contains("stored in"),
        "{err}"
    );
    let (code, out, err) = unroll_with_cache(dir.path(), Some(&cache), &run("b", "quick"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("read from"), "{err}");
    // The two runs' parameters are the same bits.
    let params = |run: &str| {
        let path = dir.path().join(run).join("model.safetensors");
        let ck = unroll::checkpoint::Checkpoint::load(&path).unwrap();
        ck.params
            .data
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<u32>>()
    };
    let a = params("a");
    assert!(a == params("b"), "the runs' parameters differ");
    // A bare shell: no cache directory named; tuned, nothing stored.
    let (code, out, err) = unroll_with_cache(dir.path(), None, &run("c", "quick"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("not stored"), "{err}");
    // A cache directory that cannot be made: a warning, and the run goes on.
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, b"mine").unwrap();
    let (code, out, err) = unroll_with_cache(dir.path(), Some(&blocked), &run("d", "quick"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: the tuned choice was not stored"),
        "{err}"
    );
    assert_eq!(std::fs::read(&blocked).unwrap(), b"mine");
    assert!(
        a == params("c"),
        "a run without a cache computed other bits"
    );
}

#[test]
fn tune_flags_that_do_not_apply_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (
            vec!["train", "--device", "cpu", "--tune", "quick"],
            "--device cpu",
        ),
        (vec!["bench", "--products", "--tune", "full"], "--products"),
        (vec!["bench", "--sync", "4", "--tune", "full"], "--sync"),
        (vec!["bench", "--tune", "sometimes"], "sometimes"),
    ] {
        common::fails_in(dir.path(), &args, &[needle]);
    }
}
