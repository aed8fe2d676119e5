//! The fleet harness's parsers, against captured output.

use super::watcher::parse_route_prefixes;
use super::*;

#[test]
fn parses_the_running_generation() {
    let metrics = "# TYPE topologyd_generation_info gauge\ntopologyd_generation_info{generation=\"3\",hash=\"ab12\"} 1\ntopologyd_generation 3\n";
    assert_eq!(
        parse_generation_info(metrics),
        Some(Generation {
            number: 3,
            hash: "ab12".into()
        })
    );
    assert_eq!(parse_generation_info("topologyd_generation 3\n"), None);
}

#[test]
fn parses_birdc_route_lists() {
    let output = "Table master4:\n1.1.1.0/24           unreachable [peer 21:10:48.470] * (100) [AS13335i]\n                     unreachable [other 21:10:48.470] (100) [AS13335i]\n2606:4700:4700::/48  unreachable [peer 21:10:48.470] * (100) [AS13335i]\n";
    let prefixes = parse_route_prefixes(output).expect("parses");
    assert_eq!(prefixes.len(), 2);
    assert!(prefixes.contains(&"1.1.1.0/24".parse().expect("prefix")));
    assert!(parse_route_prefixes("garbage line\n").is_err());
}
