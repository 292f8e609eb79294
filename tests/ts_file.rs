//! Labelled sequences in the UEA/UCR `.ts` format: what aeon and sktime write reads back
//! exactly, and each way a file can be wrong is refused with its line.

use unroll::ts_file::{parse, read};

const MULTIVARIATE: &str = "\
# A comment, then the header (tags in any case)
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true walk run
@data
1.0,2.0,3.0:-1,-2,-3:run
0.5,0.25,0.125:4e-1,5E1,6:walk

2,2,2:3,3,3:run
";

#[test]
fn a_multivariate_file_reads_back_exactly() {
    let set = parse(MULTIVARIATE).unwrap();
    assert_eq!(set.name.as_deref(), Some("Tiny"));
    assert_eq!(
        (set.channels, set.classes.clone()),
        (2, vec!["walk".into(), "run".into()])
    );
    assert_eq!(set.sequences.len(), 3);
    // Time-major: step t's channels side by side.
    assert_eq!(set.sequences[0].values, [1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
    assert_eq!(set.sequences[1].values, [0.5, 0.4, 0.25, 50.0, 0.125, 6.0]);
    assert_eq!(
        set.sequences.iter().map(|s| s.label).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    assert_eq!((set.max_len(), set.class_counts()), (3, vec![1, 2]));
}

#[test]
fn variable_lengths_and_numeric_labels_read() {
    let text = "@problemName G\n@univariate true\n@equalLength false\n\
                @classLabel true 1 2 10\n@data\n1,2,3,4:10\n5:1\n6,7:2\n";
    let set = parse(text).unwrap();
    let lens: Vec<usize> = set.sequences.iter().map(|s| s.len(1)).collect();
    assert_eq!((set.channels, lens), (1, vec![4, 1, 2]));
    assert_eq!(
        set.sequences.iter().map(|s| s.label).collect::<Vec<_>>(),
        [2, 0, 1]
    );
}

#[test]
fn every_broken_file_is_refused_with_its_line() {
    let head = "@dimensions 2\n@classLabel true a b\n@data\n";
    for (text, needle) in [
        (
            format!("{head}1,2:3,?:a\n"),
            "line 4, channel 2, value 2 is missing (`?`)",
        ),
        (
            format!("{head}1,NaN:3,4:a\n"),
            "line 4, channel 1, value 2 is missing",
        ),
        (format!("{head}1,inf:3,4:a\n"), "`inf`, not a finite number"),
        (format!("{head}1,x:3,4:a\n"), "`x` is not a number"),
        (
            format!("{head}1,2:3,4:c\n"),
            "line 4: label `c` is not one of @classLabel's classes (a b)",
        ),
        (
            format!("{head}1,2:a\n"),
            "line 4: 1 channels and a label, the header says 2",
        ),
        (
            format!("{head}1,2:3:a\n"),
            "channel 2 has 1 values, channel 1 has 2",
        ),
        (
            format!("{head}:3:a\n"),
            "line 4, channel 1, value 1 is empty",
        ),
        (format!("{head}1,,2:3,4,5:a\n"), "value 2 is empty"),
        (format!("{head}\n"), "holds no sequence"),
        ("@dimensions 2\n@data\n1:2:a\n".into(), "no @classLabel"),
        ("@classLabel true a\n".into(), "no @data line"),
        (
            "@classLabel false\n@data\n".into(),
            "line 1: @classLabel false",
        ),
        ("@classLabel true\n@data\n".into(), "names no class"),
        (
            "@classLabel true a a\n@data\n".into(),
            "class `a` is declared twice",
        ),
        ("@timeStamps true\n".into(), "line 1: @timeStamps true"),
        ("@targetLabel true\n".into(), "regression"),
        ("@dimensions 0\n".into(), "@dimensions is `0`"),
        ("@equalLength maybe\n".into(), "not true or false"),
        ("@colour blue\n".into(), "`@colour` is not a tag"),
        ("1,2:a\n".into(), "line 1: a value line before @data"),
        (
            "@univariate true\n@dimensions 3\n@classLabel true a\n@data\n".into(),
            "@univariate true and @dimensions 3",
        ),
        (
            "@equalLength true\n@classLabel true a\n@data\n1,2:a\n3:a\n".into(),
            "sequence 2 has 1 steps",
        ),
        (
            "@seriesLength 3\n@classLabel true a\n@data\n1,2:a\n".into(),
            "@seriesLength 3",
        ),
    ] {
        let err = parse(&text).expect_err(&text);
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn a_file_is_read_through_the_data_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.ts");
    std::fs::write(&path, MULTIVARIATE).unwrap();
    assert_eq!(read(&path, 1 << 20).unwrap(), parse(MULTIVARIATE).unwrap());
    let err = read(&path, 10).unwrap_err().to_string();
    assert!(err.contains("more than the limit of 10"), "{err}");
    std::fs::write(&path, b"@classLabel true a\n@data\n1:\xff\n").unwrap();
    let err = read(&path, 1 << 20).unwrap_err().to_string();
    assert!(
        err.contains("is not UTF-8") && err.contains("tiny.ts"),
        "{err}"
    );
    std::fs::write(&path, "@classLabel true a\n@data\n1:b\n").unwrap();
    let err = read(&path, 1 << 20).unwrap_err().to_string();
    assert!(err.contains("tiny.ts") && err.contains("line 3"), "{err}");
}
