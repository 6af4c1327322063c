//! The payload property Intuit's Node samples rely on: `JSON.stringify(JSON.parse(body))`
//! reproduces the body byte for byte. Checked by real Node.js over generated bodies full
//! of quotes, backslashes, control characters and non-ASCII text.
//!
//! Without `node` on the PATH the test says so and skips, unless
//! `LEDGERHOOK_TEST_REQUIRE_NODE=1` (set by CI), under which that is a failure.

use ledgerhook_delivery::payload;
use ledgerhook_domain::{ChangeEvent, Operation, Timestamp, ENTITIES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::process::Command;

const TRICKY: &[&str] = &[
    "\"", "\\", "/", "\u{0}", "\u{1}", "\u{8}", "\t", "\n", "\u{b}", "\u{c}", "\r", "\u{1f}", "\u{7f}", "é",
    "ß", "中文", "😀", "\u{2028}", "\u{2029}", "\u{fffd}", "\u{feff}", "<script>", "&amp;", "'", "0", "-1",
    "1e3", "null", " ",
];

fn tricky_string(rng: &mut StdRng) -> String {
    let parts = rng.gen_range(1..6);
    (0..parts)
        .map(|_| {
            if rng.gen_bool(0.7) {
                TRICKY[rng.gen_range(0..TRICKY.len())].to_owned()
            } else {
                char::from_u32(rng.gen_range(0x20..0x3000))
                    .filter(|c| !c.is_control())
                    .unwrap_or('x')
                    .to_string()
            }
        })
        .collect()
}

fn random_event(rng: &mut StdRng) -> ChangeEvent {
    let spec = &ENTITIES[rng.gen_range(0..ENTITIES.len())];
    let ops: Vec<Operation> = spec.operations().collect();
    let operation = ops[rng.gen_range(0..ops.len())];
    ChangeEvent {
        entity: spec.name,
        entity_id: tricky_string(rng),
        operation,
        last_updated: Timestamp(rng.gen_range(0..4_102_444_800_000)),
        deleted_id: (operation == Operation::Merge).then(|| tricky_string(rng)),
    }
}

#[test]
fn javascript_round_trip_reproduces_every_body() {
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !node_ok {
        if std::env::var("LEDGERHOOK_TEST_REQUIRE_NODE").as_deref() == Ok("1") {
            panic!("LEDGERHOOK_TEST_REQUIRE_NODE=1 but node is not on the PATH");
        }
        eprintln!("skipping: node is not on the PATH");
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x1ed9e400);
    let mut bodies = Vec::new();
    for _ in 0..1500 {
        let realm = tricky_string(&mut rng);
        let events: Vec<ChangeEvent> = (0..rng.gen_range(1..8)).map(|_| random_event(&mut rng)).collect();
        bodies.push(payload::legacy(&realm, &events));
        bodies.extend(payload::cloudevents(&tricky_string(&mut rng), &realm, &events));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bodies.txt");
    let mut file = std::fs::File::create(&path).unwrap();
    for body in &bodies {
        assert!(!body.contains('\n'), "a body contains a raw newline");
        writeln!(file, "{body}").unwrap();
    }
    drop(file);
    let script = r#"
        const lines = require('fs').readFileSync(process.argv[1], 'utf8').split('\n').filter(l => l.length > 0);
        let bad = lines.filter(l => JSON.stringify(JSON.parse(l)) !== l);
        console.log(JSON.stringify({checked: lines.length, mismatches: bad.length, first: bad[0] || null}));
    "#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checked"], bodies.len());
    assert_eq!(report["mismatches"], 0, "first mismatch: {}", report["first"]);
}
