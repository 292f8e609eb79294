//! Labelled sequences made into batches: the layout a sequence head reads, a stratified split,
//! the training split's normalisation, and buckets that keep the padding small.

use unroll::cell::Cell;
use unroll::data::Vocab;
use unroll::model::{Head, Inputs, ModelConfig, Targets};
use unroll::sequences::{LabelledSequences, Steps};
use unroll::ts_file::parse;

/// `n` sequences of 2 channels, class i % 3, sequence i being 1 + (7·i) % 23 steps long, step t
/// of it (t, −t) + i.
fn varied(n: usize) -> LabelledSequences {
    let mut text = String::from("@dimensions 2\n@classLabel true a b c\n@data\n");
    for i in 0..n {
        let len = 1 + (7 * i) % 23;
        let ch = |s: f32| {
            (0..len)
                .map(|t| format!("{}", s * t as f32 + i as f32))
                .collect::<Vec<_>>()
                .join(",")
        };
        text += &format!("{}:{}:{}\n", ch(1.0), ch(-1.0), ["a", "b", "c"][i % 3]);
    }
    parse(&text).unwrap().into()
}

#[test]
fn a_batch_is_time_major_with_zero_padding_and_its_lengths() {
    let set = varied(5);
    let config = ModelConfig::dense(2, 4, 3).with_head(Head::Last);
    let batch = set.batch(&[1, 3], &config);
    let (n1, n3) = (set.length(1), set.length(3));
    assert_eq!((n1, n3), (8, 22));
    assert_eq!((batch.batch, batch.steps), (2, 22));
    assert_eq!(batch.lengths, Some(vec![8, 22]));
    assert_eq!(batch.targets, Targets::Labels(vec![1, 0]));
    let Inputs::Dense(x) = &batch.inputs else {
        panic!("dense inputs")
    };
    // (t, b, c): sequence 1 at b = 0 has (t + 1, −t + 1) for t < 8, then zeros.
    assert_eq!(&x[(5 * 2) * 2..][..2], &[6.0, -4.0]);
    assert_eq!(&x[(9 * 2) * 2..][..2], &[0.0, 0.0]);
    assert_eq!(&x[(21 * 2 + 1) * 2..][..2], &[24.0, -18.0]);
    batch.validate(&config).unwrap();
    // The reference runs it, bidirectional and all.
    let config = config.with_cell(Cell::Gru, 2).bidirectional();
    let params = unroll::Params::init(config, 1).cast::<f64>();
    let out = unroll::cpu::step(&params, &set.batch(&[1, 3], &config));
    assert!(out.loss.is_finite() && out.loss > 0.0);
}

#[test]
fn the_split_holds_out_each_class_alike_and_keeps_every_sequence_once() {
    let set = varied(30);
    let (train, val) = set.split_stratified(0.2, 5).unwrap();
    assert_eq!((train.len(), val.len()), (24, 6));
    for k in 0..3 {
        assert_eq!(
            val.labels.iter().filter(|&&l| l == k).count(),
            2,
            "class {k}"
        );
    }
    let firsts = |s: &LabelledSequences| -> Vec<i64> {
        let Steps::Dense { data, .. } = &s.steps else {
            unreachable!()
        };
        data.iter().map(|v| v[0] as i64).collect()
    };
    let mut all = [firsts(&train), firsts(&val)].concat();
    all.sort();
    assert_eq!(all, (0..30).collect::<Vec<i64>>());
    // The seed draws the split, the same one every time.
    assert_eq!(set.split_stratified(0.2, 5).unwrap(), (train, val.clone()));
    assert_ne!(set.split_stratified(0.2, 6).unwrap().1, val);
    // A class of one stays in training; a fraction outside (0, 1) is refused.
    let (_, val) = varied(4).split_stratified(0.4, 1).unwrap();
    assert_eq!(val.labels, [0]);
    for bad in [0.0, 1.0, f64::NAN] {
        assert!(set.split_stratified(bad, 1).is_err());
    }
}

#[test]
fn normalisation_uses_the_training_split_alone() {
    let set = varied(12);
    let (mut train, mut val) = set.split_stratified(0.25, 2).unwrap();
    let stats = train.channel_stats().unwrap();
    train.normalize(&stats);
    val.normalize(&stats);
    let again = train.channel_stats().unwrap();
    for k in 0..2 {
        assert!(
            again.mean[k].abs() < 1e-6 && (again.std[k] - 1.0).abs() < 1e-6,
            "{again:?}"
        );
    }
    // The held-out split is scaled by the training split's numbers, not its own.
    let own = val.channel_stats().unwrap();
    assert!(own.mean.iter().any(|m| m.abs() > 1e-3), "{own:?}");
    // A constant channel is left unscaled.
    let flat: LabelledSequences = parse("@classLabel true a\n@data\n3,3,3:a\n")
        .unwrap()
        .into();
    assert_eq!(flat.channel_stats().unwrap().std, [1.0]);
}

#[test]
fn buckets_cover_every_sequence_once_and_pad_less_than_file_order() {
    let set = varied(40);
    let buckets = set.buckets(8, 3);
    let mut seen: Vec<usize> = buckets.iter().flatten().copied().collect();
    seen.sort();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    assert!(buckets.iter().all(|b| !b.is_empty() && b.len() <= 8));
    let in_order: Vec<Vec<usize>> = (0..40)
        .collect::<Vec<_>>()
        .chunks(8)
        .map(<[usize]>::to_vec)
        .collect();
    let (sorted, plain) = (set.padded_share(&buckets), set.padded_share(&in_order));
    assert!(
        sorted < plain / 2.0,
        "bucketed {sorted:.3}, in file order {plain:.3}"
    );
    assert_ne!(set.buckets(8, 4), buckets, "the seed orders the batches");
    // Sequences of one length: no padding at all.
    let one: LabelledSequences = parse("@classLabel true a\n@data\n1,2:a\n3,4:a\n5,6:a\n")
        .unwrap()
        .into();
    assert_eq!(one.padded_share(&one.buckets(2, 1)), 0.0);
}

#[test]
fn a_sample_draws_distinct_sequences_in_the_sets_order() {
    let set = varied(40);
    let drawn = set.sample(10, 5);
    assert_eq!(drawn.len(), 10);
    assert_eq!(drawn, set.sample(10, 5), "the seed decides the draw");
    assert_ne!(drawn, set.sample(10, 6), "another seed draws others");
    // Each drawn sequence is one of the set's, once, in the set's order (the lengths and first
    // values of varied() tell them apart).
    let key = |s: &LabelledSequences, i: usize| match &s.steps {
        Steps::Dense { data, .. } => (s.length(i), data[i][0].to_bits()),
        Steps::Tokens(_) => unreachable!("varied() is dense"),
    };
    let all: Vec<_> = (0..40).map(|i| key(&set, i)).collect();
    let at: Vec<usize> = (0..10)
        .map(|i| all.iter().position(|k| *k == key(&drawn, i)).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    // A set no larger than the draw is the whole set.
    assert_eq!(set.sample(40, 5), set);
    assert_eq!(set.sample(1000, 5), set);
}

#[test]
fn the_padded_share_counts_the_steps_an_engine_computes() {
    // Lengths 3, 5 and 8 (one channel): batches [3, 5] (T = 5) and [8] (T = 8).
    let set: LabelledSequences =
        parse("@classLabel true a\n@data\n1,2,3:a\n1,2,3,4,5:a\n1,2,3,4,5,6,7,8:a\n")
            .unwrap()
            .into();
    let batches = [vec![0, 1], vec![2]];
    let padding = set.padding(&batches);
    // 16 valid steps of 5·2 + 8·1 = 18.
    assert_eq!(padding.share(|t| t), 1.0 - 16.0 / 18.0);
    assert_eq!(padding.share(|t| t), set.padded_share(&batches));
    // A step that rounds T up to a multiple of 4 computes 8·2 + 8·1 = 24.
    assert_eq!(padding.share(|t| t.next_multiple_of(4)), 1.0 - 16.0 / 24.0);
}

#[test]
fn text_lines_become_token_sequences_of_their_labels() {
    let text = "pos\tgood fun\nneg\tbad\n\npos\tfun\r\n";
    let vocab = Vocab::from_text("good fun bad");
    let set = LabelledSequences::from_text(text, &vocab, None).unwrap();
    assert_eq!(set.classes, ["neg", "pos"]);
    assert_eq!(set.labels, [1, 0, 1]);
    assert_eq!((set.len(), set.length(0), set.length(2)), (3, 8, 3));
    let config = ModelConfig::tokens(vocab.len(), 4).with_head(Head::Mean);
    let config = ModelConfig {
        output: 2,
        ..config
    };
    set.batch(&[0, 1, 2], &config).validate(&config).unwrap();
    // Numeric labels sort as numbers.
    let numbers = LabelledSequences::from_text("10\tf\n2\tf\n", &vocab, None).unwrap();
    assert_eq!(numbers.classes, ["2", "10"]);
    for (bad, needle) in [
        ("pos good\n", "line 1: no tab"),
        ("pos\t\n", "line 1: the text of label `pos` is empty"),
        ("pos\tzzz\n", "line 1:"),
        ("", "no `label<TAB>text` line"),
    ] {
        let err = LabelledSequences::from_text(bad, &vocab, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{bad:?}: {err}");
    }
    let classes = ["neg".to_string()];
    let err = LabelledSequences::from_text("pos\tfun\n", &vocab, Some(&classes)).unwrap_err();
    assert!(
        err.to_string()
            .contains("label `pos` is not one of the classes (neg)"),
        "{err}"
    );
}

#[test]
fn every_pass_holds_every_sequence_once_in_its_own_order() {
    use unroll::dataset::{Chunk, Dataset, SequenceBatches};
    let set = varied(30);
    let config = ModelConfig::dense(2, 4, 3).with_head(Head::Mean);
    let data = SequenceBatches::new(set.clone(), config, 8, 1);
    assert_eq!(data.chunks_per_epoch(), 4);
    let pass = |epoch: u64| -> Vec<Vec<usize>> {
        (0..4)
            .map(|k| match data.chunk(epoch, k) {
                Chunk::Sequences(b) => b.lengths.unwrap(),
                Chunk::Streams { .. } => panic!("whole sequences"),
            })
            .collect()
    };
    let mut want: Vec<usize> = (0..30).map(|i| set.length(i)).collect();
    want.sort();
    for epoch in [0, 1, 5] {
        let mut got: Vec<usize> = pass(epoch).concat();
        got.sort();
        assert_eq!(got, want, "pass {epoch}");
    }
    // A pass asked for again (a resumed run) is the same; another pass is ordered anew.
    let first = pass(0);
    assert_ne!(pass(1), first);
    assert_eq!(pass(0), first);
}
