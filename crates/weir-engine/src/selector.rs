//! Label selector matching, exactly as `metav1.LabelSelectorAsSelector` defines it.

use weir_model::{LabelSelector, Labels, Operator};

/// Whether `selector` matches `labels`. The empty selector matches everything.
pub fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator {
                Operator::In => value.is_some_and(|v| r.values.contains(v)),
                // NotIn also matches when the key is absent.
                Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::Requirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators() {
        let req = |key: &str, operator, values: &[&str]| LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![Requirement {
                key: key.into(),
                operator,
                values: values.iter().map(|s| s.to_string()).collect(),
            }],
        };
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(matches(&req("app", Operator::In, &["web", "db"]), &l));
        assert!(!matches(&req("app", Operator::In, &["db"]), &l));
        assert!(!matches(&req("app", Operator::NotIn, &["web"]), &l));
        assert!(matches(&req("missing", Operator::NotIn, &["web"]), &l));
        assert!(matches(&req("tier", Operator::Exists, &[]), &l));
        assert!(!matches(&req("tier", Operator::DoesNotExist, &[]), &l));
        assert!(matches(&LabelSelector::default(), &Labels::new()));
    }
}
