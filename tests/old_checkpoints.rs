//! Checkpoints written by earlier versions (`tests/fixtures/checkpoint_elman_*_v1.safetensors`,
//! the single tanh layer with its bias folded into `rnn.bias_ih_l0`) still load, sample or
//! forecast, and resume.

use std::path::Path;
use unroll::checkpoint::Checkpoint;

const TEXT: &str = "tests/fixtures/checkpoint_elman_text_v1.safetensors";
const SERIES: &str = "tests/fixtures/checkpoint_elman_series_v1.safetensors";

fn unroll(cwd: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroll"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "unroll {args:?}:\n{all}");
    all
}

#[test]
fn old_checkpoints_load_with_their_state() {
    let text = Checkpoint::load(Path::new(TEXT)).unwrap();
    assert_eq!(text.info.step, 4);
    assert_eq!(
        (text.params.config.hidden, text.params.config.input),
        (8, 14)
    );
    assert!(text.optimizer.is_some() && text.hidden.is_some() && text.info.vocab.is_some());
    // Format 1 folded one bias into `rnn.bias_ih_l0` and wrote zeros for `rnn.bias_hh_l0`: the
    // same model in the table of both biases; b_hh's moments start at zero.
    let config = text.params.config;
    assert!(config.is_elman());
    assert!(text.params.get("rnn.bias_hh_l0").iter().all(|&v| v == 0.0));
    assert!(text.params.get("rnn.bias_ih_l0").iter().any(|&v| v != 0.0));
    let o = text.optimizer.as_ref().unwrap();
    assert_eq!(o.m.len(), config.num_params());
    let b_hh = config.table().get("rnn.bias_hh_l0").unwrap().clone();
    assert!(
        o.m[b_hh.offset..b_hh.offset + b_hh.len]
            .iter()
            .all(|&v| v == 0.0)
    );
    assert!(
        o.m[b_hh.offset - b_hh.len..b_hh.offset]
            .iter()
            .any(|&v| v != 0.0)
    );
    // Its (B, H) state is one layer's.
    let streams = text.positions.as_ref().unwrap().len();
    assert_eq!(
        text.hidden.as_ref().unwrap().len(),
        config.carry_len(streams)
    );
    let series = Checkpoint::load(Path::new(SERIES)).unwrap();
    assert!(series.info.normalization.is_some());
}

#[test]
fn old_checkpoints_sample_forecast_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = std::env::current_dir().unwrap();
    let text = root.join(TEXT);
    let series = root.join(SERIES);
    let said = unroll(
        d,
        &[
            "sample",
            "--checkpoint",
            text.to_str().unwrap(),
            "--len",
            "20",
            "--prime",
            "1",
        ],
    );
    assert!(
        said.starts_with('1') && said.chars().count() >= 21,
        "{said}"
    );
    unroll(
        d,
        &[
            "forecast",
            "--checkpoint",
            series.to_str().unwrap(),
            "--horizon",
            "5",
            "--out",
            "f.csv",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(d.join("f.csv"))
            .unwrap()
            .lines()
            .count(),
        6
    );
    // Resumed into a directory of its own: two more steps on the CPU.
    let copy = d.join("run").join("model.safetensors");
    std::fs::create_dir(d.join("run")).unwrap();
    std::fs::copy(&text, &copy).unwrap();
    unroll(
        d,
        &[
            "train",
            "--device",
            "cpu",
            "--quiet",
            "--resume",
            copy.to_str().unwrap(),
            "--iters",
            "6",
        ],
    );
    assert_eq!(Checkpoint::load(&copy).unwrap().info.step, 6);
}
