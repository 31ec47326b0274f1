//! The generated table for the seed example, and its shape at scale.

use weir_engine::Engine;
use weir_manifest::{load_paths, LoadOptions};
use weir_nft::apply::{Enforcer, FakeNft, Mode};
use weir_nft::{compile, compile_with, CompileOptions, PodInterfaces, Scope};

fn todos() -> weir_model::Cluster {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/todos");
    let mut cluster = load_paths(&[root], LoadOptions::default())
        .expect("examples load")
        .cluster;
    // The lab gives pods addresses; do the same here so the table has elements.
    for (i, ep) in cluster.endpoints.iter_mut().enumerate() {
        ep.ips = vec![format!("10.244.0.{}", i + 1).parse().unwrap()];
    }
    cluster
}

#[test]
fn todos_table_snapshot() {
    let cluster = todos();
    let engine = Engine::new(&cluster);
    insta::assert_snapshot!(compile(&engine, Scope::All).render());
}

#[test]
fn scope_limits_dispatch_to_local_endpoints() {
    let cluster = todos();
    let engine = Engine::new(&cluster);
    let redis = cluster.endpoint_index("production/redis").unwrap();
    let rs = compile(&engine, Scope::Endpoints(&[redis]));
    let ingress = &rs.sets["ingress4"].elements;
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    let ip = cluster.endpoints[redis].ips[0];
    assert!(ingress
        .iter()
        .next()
        .unwrap()
        .starts_with(&format!("{ip} : jump ig-")));
    // Only the policies selecting redis get chains.
    assert!(policy_chain(&rs, "production/data-from-logic-redis ingress").is_some());
    assert!(policy_chain(&rs, "production/logic-from-any-http ingress").is_none());
}

/// The generated name of the chain whose rules carry this comment prefix.
fn policy_chain(rs: &weir_nft::Ruleset, comment: &str) -> Option<String> {
    rs.chains
        .iter()
        .find(|(_, c)| c.rules.iter().any(|r| r.contains(&format!("\"{comment}["))))
        .map(|(n, _)| n.clone())
}

#[test]
fn enforcer_checks_then_replaces_then_sends_deltas() {
    let mut cluster = todos();
    let engine = Engine::new(&cluster);
    let first = compile(&engine, Scope::All);
    let mut enforcer = Enforcer::new(FakeNft::default());
    assert_eq!(enforcer.apply(first.clone()).unwrap().mode, Mode::Full);
    assert_eq!(enforcer.apply(first).unwrap().mode, Mode::Unchanged);
    // A new pod labelled into the logic tier: only set elements change.
    let mut pod = cluster.endpoints[0].clone();
    pod.name = "newcomer".into();
    pod.namespace = "production".into();
    pod.labels = [("networking/logic".to_string(), "true".to_string())].into();
    pod.ips = vec!["10.244.0.99".parse().unwrap()];
    cluster.endpoints.push(pod);
    let engine = Engine::new(&cluster);
    let applied = enforcer.apply(compile(&engine, Scope::All)).unwrap();
    assert_eq!(applied.mode, Mode::Delta);
    let scripts = enforcer.nft().scripts.lock().unwrap().clone();
    let kinds: Vec<(bool, bool)> = scripts
        .iter()
        .map(|(s, check)| (s.starts_with("table inet weir\ndelete table"), *check))
        .collect();
    assert_eq!(kinds, vec![(true, true), (true, false), (false, false)]);
    let delta = &scripts[2].0;
    assert!(delta.contains("add element inet weir sel-"), "{delta}");
    assert!(delta.contains("10.244.0.99"), "{delta}");
    assert!(
        !delta.contains("flush chain"),
        "no chain needed rewriting: {delta}"
    );
}

#[test]
fn failed_delta_falls_back_to_a_full_replace_and_failed_full_keeps_state() {
    let cluster = todos();
    let engine = Engine::new(&cluster);
    let rs = compile(&engine, Scope::All);
    let mut changed = rs.clone();
    let data = policy_chain(&rs, "production/data-from-logic-redis ingress").unwrap();
    changed.chains.get_mut(&data).unwrap().rules.pop();
    let nft = FakeNft {
        reject_containing: Some("flush chain".into()),
        ..Default::default()
    };
    let mut enforcer = Enforcer::new(nft);
    enforcer.apply(rs.clone()).unwrap();
    let applied = enforcer.apply(changed.clone()).unwrap();
    assert_eq!(applied.mode, Mode::Full);
    assert!(
        applied.delta_refused.is_some(),
        "the refused delta is reported"
    );
    assert_eq!(enforcer.current(), Some(&changed));

    let nft = FakeNft {
        reject_containing: Some("table inet weir".into()),
        ..Default::default()
    };
    let mut enforcer = Enforcer::new(nft);
    assert!(enforcer.apply(rs).is_err());
    assert_eq!(enforcer.current(), None, "nothing recorded as applied");
}

#[test]
fn rules_grow_with_groups_and_policy_rules_not_their_product() {
    use weir_model::{LabelSelector, Policy, Rule};
    let mut cluster = todos();
    let template = cluster.endpoints[0].clone();
    for i in 0..300 {
        let mut ep = template.clone();
        ep.name = format!("p{i}");
        ep.namespace = "production".into();
        ep.labels = [("app".to_string(), format!("a{}", i % 10))].into();
        ep.ips = vec![format!("10.245.{}.{}", i / 200, i % 200 + 1)
            .parse()
            .unwrap()];
        cluster.endpoints.push(ep);
    }
    for i in 0..200 {
        cluster.policies.push(Policy {
            namespace: "production".into(),
            name: format!("np{i}"),
            pod_selector: LabelSelector::default(), // every pod, every policy
            isolates_ingress: true,
            isolates_egress: false,
            ingress: vec![Rule::default()],
            egress: vec![],
            mode: Default::default(),
            origin: Default::default(),
        });
    }
    let engine = Engine::new(&cluster);
    let size = compile(&engine, Scope::All).size();
    // 300 endpoints × 200 policies would be 60,000; groups (≈ 13) × policies plus
    // the policies' own rules is a few thousand.
    assert!(size.rules < 5_000, "{size:?}");
    assert!(size.elements >= 300, "{size:?}");
}

#[test]
fn fail_closed_and_drop_log_options() {
    let cluster = todos();
    let engine = Engine::new(&cluster);
    let options = CompileOptions {
        pod_interfaces: Some("wp*".parse().unwrap()),
        log_group: Some(7),
        audit: false,
    };
    let rs = compile_with(&engine, Scope::All, &options);
    let egress = rs.chains["egress"].rules.join("\n");
    assert!(
        egress.contains(r#"iifname "wp*" ip saddr != @local4 counter drop"#),
        "{egress}"
    );
    assert!(
        egress.contains(r#"log prefix "weir unknown-local-pod" group 7"#),
        "{egress}"
    );
    assert!(rs.chains["ingress"]
        .rules
        .iter()
        .any(|r| r.starts_with(r#"oifname "wp*" ip6 daddr != @local6"#)));
    assert_eq!(rs.sets["local4"].elements.len(), cluster.endpoints.len());
    // Each group chain logs (rate limited) before its drop, prefixed with its own name.
    for (name, chain) in rs.chains.iter().filter(|(n, _)| n.starts_with("ig-")) {
        let n = chain.rules.len();
        assert!(
            chain.rules[n - 2].starts_with("limit rate 50/second"),
            "{name}"
        );
        assert!(
            chain.rules[n - 2].contains(&format!("prefix \"weir {name}\" group 7")),
            "{name}"
        );
        assert!(chain.rules[n - 1].starts_with("counter drop"), "{name}");
    }
    // Anti-spoofing comes first in egress, before anything is accepted.
    assert!(
        rs.chains["egress"].rules[0].starts_with(r#"iifname "wp*" fib saddr . iif oif missing"#),
        "{egress}"
    );
    let spoof = |rules: &[String]| rules.iter().position(|r| r.contains("fib saddr"));
    let accept = |rules: &[String]| rules.iter().position(|r| r.contains("accept"));
    assert!(spoof(&rs.chains["egress"].rules) < accept(&rs.chains["egress"].rules));
    // Without options, none of it.
    let plain = compile(&engine, Scope::All).render();
    assert!(!plain.contains("local4") && !plain.contains("log prefix") && !plain.contains("fib"));
}

/// The seed with the tier examples, each endpoint given an address.
fn todos_with_tiers() -> weir_model::Cluster {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut cluster = load_paths(
        &[format!("{root}/todos"), format!("{root}/tiers")],
        LoadOptions::default(),
    )
    .expect("examples load")
    .cluster;
    for (i, ep) in cluster.endpoints.iter_mut().enumerate() {
        ep.ips = vec![format!("10.244.0.{}", i + 1).parse().unwrap()];
    }
    cluster
}

/// A pod's packets to its own node are delivered (input hook), not forwarded: the input
/// hook gets the forward egress chain's rules — anti-spoofing first, fail-closed, every
/// tier's dispatch — with only neighbour discovery let through ahead of them; and nothing
/// filters what the node sends its pods (the kubelet's probes).
#[test]
fn a_pods_egress_to_its_own_node_is_the_egress_chain_on_the_input_hook() {
    let cluster = todos_with_tiers();
    let engine = Engine::new(&cluster);
    for options in [
        CompileOptions::default(),
        CompileOptions {
            pod_interfaces: Some("wp*".parse().unwrap()),
            log_group: Some(7),
            audit: false,
        },
    ] {
        let rs = compile_with(&engine, Scope::All, &options);
        let forward = &rs.chains["egress"];
        let input = &rs.chains[weir_nft::EGRESS_TO_NODE];
        assert_eq!(
            forward.header.as_deref(),
            Some("type filter hook forward priority -1; policy accept;")
        );
        assert_eq!(
            input.header.as_deref(),
            Some("type filter hook input priority -1; policy accept;")
        );
        let nd: Vec<&String> = input
            .rules
            .iter()
            .filter(|r| r.starts_with("icmpv6 type nd-"))
            .collect();
        assert_eq!(nd.len(), 3, "{:?}", input.rules);
        let rest: Vec<&String> = input
            .rules
            .iter()
            .filter(|r| !r.starts_with("icmpv6 type nd-"))
            .collect();
        // The forward chain's rules but the invalid-state drop: the node's own traffic
        // also passes the input hook, and weir leaves it alone.
        let invalid = "ct state invalid drop";
        assert!(forward.rules.iter().any(|r| r == invalid));
        assert!(input.rules.iter().all(|r| r != invalid));
        let forward_rules: Vec<&String> = forward.rules.iter().filter(|r| *r != invalid).collect();
        assert_eq!(rest, forward_rules);
        // Whatever the input chain accepts or drops, it is only for local pods' packets: each
        // rule is an accept that lets traffic on, or names a pod interface or pod address map.
        for r in &input.rules {
            assert!(
                r.ends_with(" accept") && !r.contains("drop")
                    || r.contains("wp*")
                    || r.contains("vmap @"),
                "{r}"
            );
        }
        for layer in ["admin-", "", "baseline-"] {
            assert!(
                rest.iter()
                    .any(|r| r.as_str() == format!("ip saddr vmap @{layer}egress4")),
                "{layer}: {rest:?}"
            );
        }
        // Spoofed sources are dropped before neighbour discovery or anything is accepted.
        if options.pod_interfaces.is_some() {
            assert!(input.rules[0].contains("fib saddr . iif oif missing"));
        }
        assert!(rs
            .chains
            .values()
            .filter_map(|c| c.header.as_deref())
            .all(|h| !h.contains("hook output")));
    }
}

/// Pod interface patterns are the operator's text: only names nft takes as names parse,
/// and a list becomes one anonymous set in every rule that uses it.
/// A tier's Deny is logged like an isolation drop when the drop log is on: the rule jumps
/// to a chain of its own that logs under that chain's name, then drops with a comment
/// naming the policy, tier, priority and rule (what `weir drops` prints). Never a log and
/// a drop in one rule: over the rate limit, such a rule would stop before its drop.
#[test]
fn tier_denies_are_logged_with_their_rule_when_asked() {
    let cluster = todos_with_tiers();
    let engine = Engine::new(&cluster);
    let logged = compile_with(
        &engine,
        Scope::All,
        &CompileOptions {
            pod_interfaces: None,
            log_group: Some(7),
            audit: false,
        },
    );
    let denies: Vec<(&String, &weir_nft::Chain)> = logged
        .chains
        .iter()
        .filter(|(_, c)| c.rules.iter().any(|r| r.contains(" denied by ")))
        .collect();
    let whys: Vec<&str> = denies.iter().map(|(_, c)| c.rules[1].as_str()).collect();
    assert!(
        whys.iter().any(|w| w.contains(
            "ingress denied by ClusterNetworkPolicy/data-tier-stays-in-production (tier Admin, priority"
        ) && w.contains("rule ingress[1]")),
        "{whys:#?}"
    );
    assert!(
        whys.iter()
            .any(|w| w.contains("denied by BaselineAdminNetworkPolicy/default (tier Baseline")),
        "{whys:#?}"
    );
    for (name, chain) in &denies {
        assert_eq!(chain.rules.len(), 2, "{name}: {:?}", chain.rules);
        assert!(
            chain.rules[0].starts_with("limit rate 50/second")
                && chain.rules[0].ends_with(&format!("prefix \"weir {name}\" group 7")),
            "{name}: {}",
            chain.rules[0]
        );
        assert!(chain.rules[1].starts_with("counter drop comment"), "{name}");
        // Reached from its tier chain, by a rule that matches and jumps.
        let jump = format!("jump {name} comment");
        assert!(
            logged
                .chains
                .values()
                .flat_map(|c| &c.rules)
                .any(|r| r.contains(&jump)),
            "nothing jumps to {name}"
        );
    }
    let text = logged.render();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("log prefix") && l.contains("drop")),
        "{text}"
    );
    // Without the drop log the Deny drops in place, and no such chain exists.
    let plain = compile(&engine, Scope::All);
    assert!(plain
        .chains
        .values()
        .all(|c| c.rules.iter().all(|r| !r.contains(" denied by "))));
    assert!(plain
        .chains
        .values()
        .flat_map(|c| &c.rules)
        .any(|r| r.contains("counter drop comment \"ClusterNetworkPolicy/data-tier-stays-in-production ingress[1] Deny\"")));
}

#[test]
fn pod_interfaces_parse_strictly_and_render_as_a_set() {
    for bad in [
        "wp*\" accept; #",
        "",
        "a,,b",
        "*",
        "veth*x",
        "abcdefghijklmnop",
        "e th0",
        "w\u{e9}*",
    ] {
        assert!(bad.parse::<PodInterfaces>().is_err(), "{bad:?} parsed");
    }
    let list: PodInterfaces = "veth*,cali*,veth*,lxc0".parse().unwrap();
    assert_eq!(list.to_string(), "veth*,cali*,lxc0");
    let cluster = todos();
    let engine = Engine::new(&cluster);
    let options = CompileOptions {
        pod_interfaces: Some(list),
        log_group: None,
        audit: false,
    };
    let rs = compile_with(&engine, Scope::All, &options);
    let set = r#"{ "veth*", "cali*", "lxc0" }"#;
    let egress = &rs.chains["egress"].rules;
    assert!(
        egress[0].starts_with(&format!("iifname {set} fib saddr . iif oif missing")),
        "{egress:?}"
    );
    let ingress = &rs.chains["ingress"].rules;
    assert!(
        ingress
            .iter()
            .any(|r| r.starts_with(&format!("oifname {set} ip daddr != @local4"))),
        "{ingress:?}"
    );
}

/// Names and labels as an attacker would write them, straight into the compiler (no
/// validation): in the rendered table and in deltas, every one of them is inside a quoted
/// comment, and no quote, newline or brace of theirs survives there.
#[test]
fn hostile_text_only_reaches_nft_inside_comments() {
    let mut cluster = todos();
    let hostile = weir_gen::hostile::cluster();
    cluster.namespaces.extend(hostile.namespaces);
    cluster.endpoints.extend(hostile.endpoints);
    cluster.policies.extend(hostile.policies);
    let engine = Engine::new(&cluster);
    let rs = compile(&engine, Scope::All);
    let before = compile(&Engine::new(&todos()), Scope::All);
    for script in [rs.render(), rs.delta(&before).unwrap()] {
        // Take out every quoted string: what is left is weir's own syntax.
        let mut outside = String::new();
        let mut quoted = false;
        for c in script.chars() {
            if c == '"' {
                quoted = !quoted;
            } else if !quoted {
                outside.push(c);
            } else {
                assert!(
                    c == ' ' || c.is_ascii_graphic() && c != '\\',
                    "{c:?} inside a comment"
                );
            }
        }
        assert!(!quoted, "an unbalanced quote");
        for marker in ["inject", "insert", "brace", "back", "ünï", "z;", "q'"] {
            assert!(!outside.contains(marker), "{marker:?} outside a comment");
        }
    }
    // The seed's 3 ingress policies, and each hostile policy in two directions, each its
    // own chain: a policy chain if enforced, an audit chain (its rules inline) if audited.
    let policy_chains = rs
        .chains
        .keys()
        .filter(|c| {
            ["pin-", "peg-", "ia-", "ea-"]
                .iter()
                .any(|p| c.starts_with(p))
        })
        .count();
    assert_eq!(
        policy_chains,
        3 + 2 * weir_gen::hostile::names().len(),
        "{:?}",
        rs.chains.keys().collect::<Vec<_>>()
    );
}

#[test]
fn address_scope_dispatches_only_local_replicas() {
    let mut cluster = todos();
    let redis = cluster.endpoint_index("production/redis").unwrap();
    // Two replicas of redis, one on this node.
    cluster.endpoints[redis].ips =
        vec!["10.244.1.1".parse().unwrap(), "10.244.2.1".parse().unwrap()];
    let engine = Engine::new(&cluster);
    let here: std::collections::HashSet<std::net::IpAddr> = ["10.244.1.1".parse().unwrap()].into();
    let rs = weir_nft::compile(&engine, Scope::Addresses(&here));
    let ingress: Vec<&String> = rs.sets["ingress4"].elements.iter().collect();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert!(ingress[0].starts_with("10.244.1.1 : jump ig-"));
    // The other replica is still a peer everywhere it is selected.
    assert!(
        !rs.chains
            .values()
            .flat_map(|c| &c.rules)
            .any(|r| r.contains("production/logic-from-any-http ingress")),
        "todos is not local"
    );
}

#[test]
fn drift_is_any_change_but_counters() {
    // The ruleset the listing below shows: one chain of two rules.
    let mut rs = weir_nft::Ruleset::default();
    rs.chains.insert(
        "ingress".into(),
        weir_nft::Chain {
            kind: weir_nft::ChainKind::Base,
            header: None,
            rules: vec!["ip daddr @s accept".into(), "drop".into()],
            would_drop: Vec::new(),
            why: None,
        },
    );
    let nft = FakeNft::default();
    // Counters in the middle of a rule and at its start (a group chain's final drop).
    let listing = "table inet weir {\n\tchain ingress {\n\t\tip daddr @s counter packets 0 bytes 0 accept\n\t\tcounter packets 0 bytes 0 drop comment \"x\"\n\t}\n}\n";
    *nft.listing.lock().unwrap() = listing.into();
    let mut enforcer = Enforcer::new(nft);
    enforcer.track_drift = true;
    assert_eq!(enforcer.drift().unwrap(), None, "nothing applied yet");
    enforcer.apply(rs.clone()).unwrap();
    assert_eq!(enforcer.drift().unwrap(), None, "no baseline yet");
    assert!(enforcer.baseline_stale());
    let listings = enforcer.nft().scripts.lock().unwrap().len();
    enforcer.refresh_baseline().unwrap();
    assert!(!enforcer.baseline_stale());
    assert_eq!(enforcer.nft().scripts.lock().unwrap().len(), listings);
    assert_eq!(enforcer.drift().unwrap(), None);
    // Counters move: no drift.
    *enforcer.nft().listing.lock().unwrap() = listing
        .replacen("packets 0 bytes 0", "packets 1 bytes 60", 1)
        .replacen("packets 0 bytes 0", "packets 9 bytes 540", 1);
    assert_eq!(
        enforcer.drift().unwrap(),
        None,
        "moving counters are not drift, wherever they stand in a rule"
    );
    // A rule changed, the table gone: drift, said plainly.
    *enforcer.nft().listing.lock().unwrap() = listing.replace("@s", "@t");
    let what = enforcer.drift().unwrap().expect("a changed rule is drift");
    assert!(what.contains("@t"), "{what}");
    enforcer.nft().listing.lock().unwrap().clear();
    assert_eq!(
        enforcer.drift().unwrap().as_deref(),
        Some("table inet weir is missing")
    );
    // Repair is a full replace of what was last applied.
    let before = enforcer.nft().scripts.lock().unwrap().len();
    *enforcer.nft().listing.lock().unwrap() = listing.into();
    let applied = enforcer.repair().unwrap();
    assert_eq!(applied.mode, Mode::Full);
    // Changed between an apply and the baseline: refused as a baseline (the agent repairs).
    enforcer.nft().listing.lock().unwrap().clear();
    assert!(matches!(
        enforcer.refresh_baseline(),
        Err(weir_nft::apply::NftError::Verify(_))
    ));
    let scripts = enforcer.nft().scripts.lock().unwrap();
    assert!(scripts[before..]
        .iter()
        .all(|(s, _)| s.starts_with("table inet weir\ndelete table")));
}

/// `todos()` with these policies audited.
fn audited(mut cluster: weir_model::Cluster, names: &[&str]) -> weir_model::Cluster {
    for p in &mut cluster.policies {
        if names.contains(&p.name.as_str()) {
            p.mode = weir_model::Mode::Audit;
        }
    }
    cluster
}

/// The chain a pod's packets in `map` (`ingress4`, …) jump to.
fn dispatched<'a>(rs: &'a weir_nft::Ruleset, map: &str, pod: &str) -> &'a str {
    rs.sets[map]
        .elements
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{pod} : jump ")))
        .unwrap_or_else(|| panic!("{pod} in {map}: {:?}", rs.sets[map].elements))
}

/// An audited policy gets no chain that drops: the pods only it isolates jump to an audit
/// chain holding its rules inline, which ends in a counted (and logged) accept naming it as
/// a would-drop. Beside an enforced policy it changes nothing: the pods it shares with one
/// jump to the enforced policies' group chain, which never mentions it.
#[test]
fn audited_policies_compile_to_audit_chains_that_accept_their_would_drops() {
    let cluster = audited(todos(), &["any-from-any-none"]);
    let ip = |id: &str| cluster.endpoints[cluster.endpoint_index(id).unwrap()].ips[0];
    let options = CompileOptions {
        log_group: Some(7),
        ..Default::default()
    };
    let rs = compile_with(&Engine::new(&cluster), Scope::All, &options);
    // Every production pod is isolated by an enforced allow too: it jumps to the enforced
    // policies' group chain, which never mentions the audited default-deny.
    for (pod, enforced) in [("production/redis", true), ("production/todos", true)] {
        let chain = dispatched(&rs, "ingress4", &ip(pod).to_string());
        assert_eq!(chain.starts_with("ig-"), enforced, "{pod}: {chain}");
        let text = rs.chains[chain].rules.join("\n");
        assert!(!text.contains("any-from-any-none"), "{pod}: {text}");
    }
    // Audited alone: the default-deny, in a cluster without the allows.
    let only_deny = weir_model::Cluster {
        policies: cluster
            .policies
            .iter()
            .filter(|p| p.name == "any-from-any-none")
            .cloned()
            .collect(),
        ..cluster.clone()
    };
    let rs = compile_with(&Engine::new(&only_deny), Scope::All, &options);
    let chain = dispatched(&rs, "ingress4", &ip("production/redis").to_string());
    assert!(chain.starts_with("ia-"), "{chain}");
    let c = &rs.chains[chain];
    assert_eq!(
        c.would_drop,
        vec!["production/any-from-any-none".to_string()]
    );
    assert_eq!(
        c.rules,
        vec![
            format!("limit rate 50/second burst 20 packets log prefix \"weir {chain}\" group 7"),
            "counter accept comment \"would drop: ingress isolated by production/any-from-any-none (audit)\"".to_string(),
        ]
    );
    assert!(
        rs.chains
            .values()
            .flat_map(|c| &c.rules)
            .all(|r| !r.contains(" drop comment \"ingress isolated")),
        "no chain drops for an audited policy"
    );
}

/// With an enforced Baseline tier, what an audited policy admits goes on to that tier
/// (`return`), and what it does not admit meets the tier before it counts as a would-drop:
/// a packet the tier denies is dropped anyway, so it is no would-drop. The tier's allows
/// return instead of accepting, so that the audit chain can count after them.
#[test]
fn audit_chains_consult_an_enforced_baseline_tier_before_counting() {
    let cluster = audited(
        todos_with_tiers(),
        &[
            "any-from-any-none",
            "data-from-logic-redis",
            "logic-from-any-http",
        ],
    );
    let rs = compile(&Engine::new(&cluster), Scope::All);
    let redis = cluster.endpoints[cluster.endpoint_index("production/redis").unwrap()].ips[0];
    let chain = dispatched(&rs, "ingress4", &redis.to_string());
    let rules = &rs.chains[chain].rules;
    let n = rules.len();
    assert!(n >= 4, "{rules:?}");
    assert!(
        rules[..n - 3]
            .iter()
            .all(|r| r.contains(" return comment ")),
        "{rules:?}"
    );
    assert_eq!(rules[n - 3], "ip daddr vmap @baseline-ingress4");
    assert_eq!(rules[n - 2], "ip6 daddr vmap @baseline-ingress6");
    assert!(
        rules[n - 1].starts_with("counter accept comment \"would drop: "),
        "{rules:?}"
    );
    for (name, c) in &rs.chains {
        if name.starts_with("tb") {
            assert!(
                c.rules.iter().all(|r| !r.contains(" accept")),
                "{name}: {:?}",
                c.rules
            );
        }
    }
}

/// `--audit`: nothing drops but a spoofed source (and conntrack's invalid state). Tier denies, audit chains and the
/// fail-closed catch-all count would-drops and accept; each would-drop chain names its
/// policy.
#[test]
fn audit_everything_drops_only_spoofed_sources() {
    let cluster = todos_with_tiers();
    let options = CompileOptions {
        pod_interfaces: Some("wp*".parse().unwrap()),
        log_group: Some(7),
        audit: true,
    };
    let rs = compile_with(&Engine::new(&cluster), Scope::All, &options);
    let drops: Vec<&String> = rs
        .chains
        .values()
        .flat_map(|c| &c.rules)
        .filter(|r| r.ends_with(" drop") || r.contains(" drop comment"))
        .collect();
    assert!(
        drops
            .iter()
            .all(|r| r.contains("not of this pod interface") || r == &"ct state invalid drop"),
        "only anti-spoofing and invalid-state drops: {drops:#?}"
    );
    let would: Vec<(&String, &Vec<String>)> = rs
        .chains
        .iter()
        .filter(|(_, c)| !c.would_drop.is_empty())
        .map(|(n, c)| (n, &c.would_drop))
        .collect();
    // The three NetworkPolicies' audit chains and the tiers' Deny rules.
    for id in [
        "production/any-from-any-none",
        "ClusterNetworkPolicy/data-tier-stays-in-production",
        "BaselineAdminNetworkPolicy/default",
    ] {
        assert!(
            would.iter().any(|(_, p)| p.iter().any(|p| p == id)),
            "{id}: {would:?}"
        );
    }
    let base = rs.chains["ingress"].rules.join("\n");
    assert!(
        base.contains("counter accept comment \"would drop: unknown local pod (audit)\""),
        "{base}"
    );
}
