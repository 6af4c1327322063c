//! The grammar: every clause and operator, the forms client libraries send, refusals.

use super::*;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn every_operator_and_clause_parses() {
    let q = parse(
        "SELECT * FROM Customer WHERE DisplayName = 'Smith and Sons' AND Active = True \
         AND Balance > 10 AND Balance <= 99.5 AND MetaData.LastUpdatedTime >= '2026-11-28T00:00:00-08:00' \
         AND MetaData.CreateTime < '2026-12-01' AND Id IN ('1', '2', 3) AND CompanyName LIKE '%acme%' \
         ORDERBY MetaData.LastUpdatedTime DESC, Id STARTPOSITION 11 MAXRESULTS 5",
    )
    .unwrap();
    assert_eq!(q.projection, Projection::All);
    assert_eq!(q.entity, "Customer");
    let ops: Vec<Comparison> = q.conditions.iter().map(|c| c.op.clone()).collect();
    assert_eq!(
        ops,
        [
            Comparison::Eq(text("Smith and Sons")),
            Comparison::Eq(Value::Bool(true)),
            Comparison::Gt(Value::Number("10".into())),
            Comparison::Le(Value::Number("99.5".into())),
            Comparison::Ge(text("2026-11-28T00:00:00-08:00")),
            Comparison::Lt(text("2026-12-01")),
            Comparison::In(vec![text("1"), text("2"), Value::Number("3".into())]),
            Comparison::Like("%acme%".into()),
        ]
    );
    assert_eq!(q.conditions[4].field, "MetaData.LastUpdatedTime");
    assert_eq!(
        q.order,
        [
            SortKey {
                field: "MetaData.LastUpdatedTime".into(),
                descending: true
            },
            SortKey {
                field: "Id".into(),
                descending: false
            },
        ]
    );
    assert_eq!((q.start, q.max), (11, 5));
}

#[test]
fn the_forms_client_libraries_send() {
    // python-quickbooks: all(), filter(), count(), choose(); node-quickbooks: find*.
    let all = parse("SELECT *, Sku FROM Item ORDER BY Name ASC STARTPOSITION 1 MAXRESULTS 100").unwrap();
    assert_eq!(
        (all.projection, all.order.len(), all.max),
        (Projection::All, 1, 100)
    );
    let count = parse("SELECT COUNT(*) FROM Customer WHERE Active = true").unwrap();
    assert_eq!(count.projection, Projection::Count);
    let count = parse("select count ( * ) from Invoice").unwrap();
    assert_eq!(count.projection, Projection::Count);
    let fields = parse("select Id, DisplayName from customer where Id in ('7')").unwrap();
    assert_eq!(
        fields.projection,
        Projection::Fields(vec!["Id".into(), "DisplayName".into()])
    );
    assert_eq!(fields.entity, "customer");
    let escaped =
        parse(r"select * from Customer where DisplayName = 'O\'Brien' and CompanyName = 'It''s'").unwrap();
    assert_eq!(escaped.conditions[0].op, Comparison::Eq(text("O'Brien")));
    assert_eq!(escaped.conditions[1].op, Comparison::Eq(text("It's")));
    assert_eq!(
        parse("select * from Customer maxresults 5000").unwrap().max,
        MAX_RESULTS
    );
    assert_eq!(parse("select * from Customer").unwrap().max, DEFAULT_RESULTS);
}

#[test]
fn refusals_name_what_is_unsupported() {
    for (text, says) in [
        ("", "empty"),
        ("delete from Customer", "\"select\""),
        ("select * from Customer where", "field name"),
        ("select * from Customer where Id != '1'", "!="),
        (
            "select * from Customer where Id = '1' or Id = '2'",
            "or is not supported",
        ),
        ("select * from Customer where Id = 'unterminated", "not closed"),
        (
            "select * from Customer maxresults many",
            "maxresults must be a whole number",
        ),
        ("select * from Customer limit 5", "unsupported limit"),
        ("select * from Customer, Invoice", "joins"),
        (
            "select * from Customer where Name like 5",
            "like needs a quoted pattern",
        ),
        ("select * from Customer where Id in '1'", "( after in"),
        ("select * from Customer where (Id = '1')", "field name"),
        (
            "select sum(Balance) from Customer",
            "expected \"from\" but found (",
        ),
        ("select * from Customer where Name ~ 'x'", "unsupported character"),
        ("select * from Customer where Active = yes", "a value must be"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.0.contains(says), "{text:?} → {err}");
    }
}

#[test]
fn like_matches_with_wildcards_ignoring_case() {
    assert!(like("%acme%", "The ACME company"));
    assert!(like("acme%", "Acme Inc"));
    assert!(!like("acme%", "The Acme"));
    assert!(like("%", ""));
    assert!(like("a%c", "abc") && like("a%c", "ac") && !like("a%c", "ab"));
    assert!(like("exact", "Exact") && !like("exact", "exactly"));
}
