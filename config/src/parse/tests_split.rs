//! The production reader (line scanner, then table by table) against the whole-document TOML
//! parse, on generated topologies written in many styles: every prefix and binding table in its
//! own form (inline tables, dotted keys, sub-tables, quoted keys, multi-line inline tables, key
//! orders, comments, spacing, line endings), the fleet and services beside them or apart, and
//! sometimes one defect. Both must give the same raw topology and the same diagnostics.
//!
//! Owns: the generated styles and the comparison. Must not touch: the parser's internals beyond
//! choosing the reader.

use proptest::prelude::*;

use super::{Reader, parse_with};
use crate::model::{NameId, RawBinding, RawPrefix, RawTopology};
use crate::source::Source;

/// How one prefix or binding table is written, drawn by proptest.
#[derive(Debug, Clone, Copy)]
struct TableStyle {
    form: u8,
    order: u8,
    comments: bool,
    spacing: u8,
}

fn table_style() -> impl Strategy<Value = TableStyle> {
    (0..6_u8, any::<u8>(), any::<bool>(), 0..3_u8).prop_map(|(form, order, comments, spacing)| {
        TableStyle {
            form,
            order,
            comments,
            spacing,
        }
    })
}

const FLEET: &str = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\n";

/// Services with strings and arrays that hold header-like text the cutter must not take for
/// headers.
const SERVICES: &str = "[[service]]\nname = \"cdn\"\ntopology = \"\"\"\nall\"\"\"\ncommunities = [\n  \"13335:1\",\n  # [[binding]]\n]\n\n[[service]]   # [[prefix]]\nname = 'edge'\ntopology = '''region = \"eu\"'''\n\n";

const SETTINGS: &str = "[settings]\nipv4_announce_lengths = { shortest = 8, longest = 24 }\n\n";

fn prefix_table(index: usize, style: TableStyle, out: &mut String) {
    let equals = [" = ", "=", " \t=  "][style.spacing as usize % 3];
    let quote = |key: &str| {
        if style.form == 3 {
            format!("\"{key}\"")
        } else {
            key.to_string()
        }
    };
    let note = if style.comments { "   # note" } else { "" };
    let mut keys = vec![
        format!("{}{equals}\"10.{index}.0.0/16\"{note}", quote("cidr")),
        format!("{}{equals}{}", quote("origin_asn"), 64500 + index),
        if style.comments && style.form == 5 {
            format!("{}{equals}'owner é {index}'", quote("owner"))
        } else {
            format!("{}{equals}'owner {index}'", quote("owner"))
        },
        format!("{}{equals}{}", quote("advertise"), index.is_multiple_of(2)),
    ];
    let mut after = String::new();
    match style.form {
        0 | 3 => {
            keys.push(format!(
                "{}{equals}{{ {}{equals}24 }}{note}",
                quote("announce"),
                quote("split")
            ));
            keys.push(format!(
                "{}{equals}{{ {}{equals}{}, {} = 24 }}",
                quote("roa"),
                quote("asn"),
                64500 + index,
                quote("max_length")
            ));
        }
        1 => {
            keys.push(format!("announce.split{equals}24{note}"));
            keys.push(format!("roa.asn{equals}{}", 64500 + index));
            keys.push("roa . max_length = 24".to_string());
        }
        2 => {
            after = format!(
                "[prefix.announce]{note}\nsplit{equals}24\n[ prefix.roa ]\nmax_length = 24\nasn{equals}{}\n",
                64500 + index
            );
        }
        4 => {
            keys.push(format!(
                "roa{equals}{{\n  asn = {},{note}\n  max_length = 24,\n}}",
                64500 + index
            ));
            keys.push("rpki = \"refuse\"".to_string());
        }
        _ => keys.push(format!("announce{equals}\"aggregate\"{note}")),
    }
    let length = keys.len();
    keys.rotate_left(style.order as usize % length);
    out.push_str(if style.comments {
        "[[ prefix ]]  # a prefix\n"
    } else {
        "[[prefix]]\n"
    });
    for key in keys {
        out.push_str(&key);
        out.push('\n');
    }
    if style.comments {
        out.push_str("# between tables\n");
    }
    out.push_str(&after);
    if index % 3 == 1 {
        // A customer prefix's signed evidence, as a sub-table after the prefix's own.
        out.push_str(&format!(
            "[prefix.evidence]\nlongest_announced = 24\ntoken_sha256{equals}\"{:064x}\"\nchecks = [\"rdns\", \"roa\"]{note}\nverified_at = 1764936000\nkey = \"0123456789abcdef\"\nsignature = \"{:0128x}\"\n",
            index, index
        ));
    }
    out.push('\n');
}

fn binding_table(cidr: &str, service: &str, style: TableStyle, out: &mut String) {
    let equals = [" = ", "=", " \t=  "][style.spacing as usize % 3];
    let note = if style.comments { " # bound" } else { "" };
    let (cidr_key, service_key) = if style.form == 3 {
        ("\"cidr\"", "'service'")
    } else {
        ("cidr", "service")
    };
    let mut keys = [
        format!("{cidr_key}{equals}\"{cidr}\"{note}"),
        format!("{service_key}{equals}'{service}'"),
    ];
    keys.rotate_left(style.order as usize % 2);
    out.push_str("[[binding]]\n");
    for key in keys {
        out.push_str(&key);
        out.push('\n');
    }
    out.push('\n');
}

/// The defects one generated topology may carry (0: none).
const DEFECTS: usize = 13;

fn inject(defect: usize, out: &mut String) {
    out.push_str(match defect {
        1 => "[[prefix]]\ncidr = \"10.200.0.0/16\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\ncolour = \"red\"\n\n",
        2 => "[[binding]]\ncidr = \"10.201.0.0/16\"\ncidr = \"10.202.0.0/16\"\nservice = \"cdn\"\n\n",
        3 => "[[prefix]]\ncidr = \"10.203.0.0/16\"\norigin_asn = \"x\"\nowner = \"o\"\nadvertise = true\n\n",
        // A sub-table far from its [[prefix]]: it reaches the last prefix across tables.
        4 => "[prefix.announce]\nsplit = 24\n\n",
        5 => "[[prefix]]\ncidr = \"10.205.0.0/16\"\norigin_asn = 1\nadvertise = true\n\n",
        6 => "[[binding]]\ncidr = \"not-a-cidr\"\nservice = \"cdn\"\n\n",
        7 => "[[binding]]\ncidr = \"10.207.0.0/16\nservice = \"cdn\"\n\n",
        8 => "[[prefix]]\ncidr = \"10.208.0.0/16\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = { split = 24 }\n[prefix.announce]\nsplit = 25\n\n",
        // What only the pre-scan reports: a bidirectional override, nesting too deep.
        9 => "[[binding]]\ncidr = \"10.209.0.0/16\"\nservice = \"cdn\u{202E}\"\n\n",
        10 => "[[service]]\nname = \"deep\"\ntopology = \"all\"\ncommunities = [[[[[[[[[[[[[[[[[\"1:1\"]]]]]]]]]]]]]]]]]\n\n",
        // A control character in a comment, in a table the line scanner does not read.
        11 => "[[service]]   # \u{1}\nname = \"ctl\"\ntopology = \"all\"\n\n",
        12 => "[[binding]]\ncidr.x = 1   # \u{7f}\nservice = \"cdn\"\n\n",
        _ => "",
    });
}

/// The topology's files: `layout` 0 puts everything in one file, 1 the fleet and services
/// apart, 2 a service (and the settings) between the prefix tables, 3 everything in one file
/// with the prefix and binding tables first.
fn topology(
    prefixes: &[(TableStyle, TableStyle)],
    layout: u8,
    defect: (usize, usize),
    crlf: bool,
) -> Vec<Source> {
    let mut tables = String::new();
    for (index, (prefix_style, binding_style)) in prefixes.iter().enumerate() {
        if layout == 2 && index == prefixes.len() / 2 {
            tables.push_str(SETTINGS);
            tables.push_str("[[service]]\nname = \"late\"\ntopology = \"all\"\n\n");
        }
        if defect.1 % prefixes.len().max(1) == index {
            inject(defect.0, &mut tables);
        }
        prefix_table(index, *prefix_style, &mut tables);
        binding_table(
            &format!("10.{index}.0.0/16"),
            "cdn",
            *binding_style,
            &mut tables,
        );
        binding_table(
            &format!("10.{index}.1.0/24"),
            "edge",
            *prefix_style,
            &mut tables,
        );
    }
    let ending = |text: String| {
        if crlf {
            text.replace('\n', "\r\n")
        } else {
            text
        }
    };
    match layout {
        0 => vec![Source::new(
            "all.toml",
            ending(format!("{FLEET}{SERVICES}{tables}")),
        )],
        3 => vec![Source::new(
            "all.toml",
            ending(format!("# prefixes first\n\n{tables}{FLEET}{SERVICES}")),
        )],
        _ => vec![
            Source::new("fleet.toml", ending(format!("{FLEET}{SERVICES}"))),
            Source::new("prefixes.toml", ending(tables)),
        ],
    }
}

/// The prefixes with their owners' names (each reader numbers the names in the order it met
/// them).
fn named_prefixes(raw: &RawTopology) -> Vec<(RawPrefix, String)> {
    raw.prefixes
        .iter()
        .map(|prefix| {
            let name = raw.names.get(prefix.owner).to_string();
            let prefix = RawPrefix {
                owner: NameId(0),
                ..prefix.clone()
            };
            (prefix, name)
        })
        .collect()
}

/// The bindings with their services' names.
fn named_bindings(raw: &RawTopology) -> Vec<(RawBinding, String)> {
    raw.bindings
        .iter()
        .map(|binding| {
            let name = raw.names.get(binding.service).to_string();
            let binding = RawBinding {
                service: NameId(0),
                ..binding.clone()
            };
            (binding, name)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reading_by_tables_equals_the_whole_document_parse(
        prefixes in proptest::collection::vec((table_style(), table_style()), 1..6),
        layout in 0..4_u8,
        defect in (0..DEFECTS * 2, any::<usize>()),
        crlf in any::<bool>(),
        chunk_bytes in prop_oneof![Just(0_usize), 1..400_usize, Just(crate::split::CHUNK_BYTES)],
    ) {
        // Half the cases carry no defect.
        let defect = (if defect.0 < DEFECTS { defect.0 } else { 0 }, defect.1);
        let sources = topology(&prefixes, layout, defect, crlf);
        // The line scanner reads every form but the multi-line inline table by itself.
        let simple_lines = prefixes.iter().all(|(prefix, _)| prefix.form != 4);
        if defect.0 == 0 && layout == 1 && simple_lines {
            prop_assert!(
                crate::fast::parse_prefixes_and_bindings(&sources[1].text).is_some(),
                "not read by the line scanner: {}",
                sources[1].text
            );
        }
        if defect.0 == 0 {
            for source in &sources {
                let has_tables = source.name != "fleet.toml";
                let read = crate::split::read_by_tables(&source.text, false).is_some();
                prop_assert!(!has_tables || read, "not read by tables: {}", source.text);
            }
        }
        // Handed on table by table (0), every few tables, or the whole file at once.
        let (fast, fast_diagnostics) =
            parse_with(sources.clone(), Reader::ByTables { chunk_bytes });
        let (whole, whole_diagnostics) = parse_with(sources, Reader::WholeDocument);
        prop_assert_eq!(fast_diagnostics.to_string(), whole_diagnostics.to_string());
        prop_assert_eq!(format!("{:?}", fast.settings), format!("{:?}", whole.settings));
        prop_assert_eq!(fast.settings_span, whole.settings_span);
        prop_assert_eq!(&fast.locations, &whole.locations);
        prop_assert_eq!(format!("{:?}", fast.services), format!("{:?}", whole.services));
        // The same names, whatever order each reader met them in.
        prop_assert_eq!(named_prefixes(&fast), named_prefixes(&whole));
        prop_assert_eq!(named_bindings(&fast), named_bindings(&whole));
        if defect.0 == 0 {
            prop_assert!(!whole_diagnostics.has_errors(), "{}", whole_diagnostics);
            prop_assert_eq!(whole.prefixes.len(), prefixes.len());
        }
    }
}

/// A large file is handed on in chunks that end before a `[[prefix]]` or `[[binding]]` line,
/// and the lists it is converted into are sized once from the count of those lines.
#[test]
fn a_large_file_is_read_in_chunks_into_lists_sized_once() {
    let mut text = String::from("[[binding]]\ncidr = \"10.0.0.0/8\"\nservice = \"s\"\n\n");
    for index in 0..3000 {
        text.push_str(&format!(
            "[[prefix]]\ncidr = \"10.{}.{}.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n[prefix.roa]\nasn = 1\nmax_length = 24\n\n",
            index / 256,
            index % 256
        ));
    }
    text.push_str("[[prefix.not_a_header_counted]]\n");
    assert_eq!(crate::split::count_headers(&text), (3000, 1));
    // Headers with spaces and tabs before the brackets and around the name count; arrays of
    // arrays, sub-tables and other names do not.
    let forms = "  [[ prefix ]]  # a\r\n\t[[binding\t]]\n[[prefix]]x\nx = [[1]]\n[[prefixes]]\n[[binding.a]]\n# [[prefix]]\n";
    assert_eq!(crate::split::count_headers(forms), (2, 1));

    struct Chunks {
        taken: Vec<(usize, usize)>,
        expected: Option<(usize, usize)>,
    }
    impl crate::split::Tables for Chunks {
        fn take(
            &mut self,
            prefixes: &mut Vec<crate::file::PrefixFile>,
            bindings: &mut Vec<crate::file::BindingFile>,
        ) {
            self.taken.push((prefixes.len(), bindings.len()));
            prefixes.clear();
            bindings.clear();
        }
        fn expect(&mut self, prefixes: usize, bindings: usize) {
            self.expected = Some((prefixes, bindings));
        }
    }
    let text = text.replace("[[prefix.not_a_header_counted]]\n", "");
    let mut chunks = Chunks {
        taken: Vec::new(),
        expected: None,
    };
    let model = crate::split::read_by_tables_into(&text, false, 16 << 10, &mut chunks).unwrap();
    assert!(model.prefix.is_empty() && model.binding.is_empty());
    assert_eq!(chunks.expected, Some((3000, 1)));
    let (prefixes, bindings) = chunks
        .taken
        .iter()
        .fold((0, 0), |sum, chunk| (sum.0 + chunk.0, sum.1 + chunk.1));
    assert_eq!((prefixes, bindings), (3000, 1));
    // About 100 tables of about 100 bytes in each 16 KiB chunk, the roa sub-tables never
    // cut from their prefix (each would then be read as a table of its own and fail).
    assert!(chunks.taken.len() > 10, "{:?}", chunks.taken.len());
}

/// What a reader was handed, hand-over by hand-over: every value of every table, with its
/// place.
#[derive(Default)]
struct Handed(Vec<String>);

impl crate::split::Tables for Handed {
    fn take(
        &mut self,
        prefixes: &mut Vec<crate::file::PrefixFile>,
        bindings: &mut Vec<crate::file::BindingFile>,
    ) {
        self.0
            .push(crate::fast::tests::describe(prefixes, bindings));
        prefixes.clear();
        bindings.clear();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Scanned ahead on several threads or one chunk after the other, a file's tables are
    /// handed on alike (the same tables, places and values, in file order) and the file is
    /// read, or given up on, alike: also where the scanner stops at tables it cannot read
    /// and pieces are read past the chunks scanned ahead.
    #[test]
    fn scanning_ahead_on_threads_reads_as_one_chunk_after_the_other(
        prefixes in proptest::collection::vec((table_style(), table_style()), 1..6),
        layout in 0..4_u8,
        defect in (0..DEFECTS * 2, any::<usize>()),
        crlf in any::<bool>(),
        chunk_bytes in prop_oneof![Just(0_usize), 1..400_usize],
        workers in 2..5_usize,
    ) {
        let defect = (if defect.0 < DEFECTS { defect.0 } else { 0 }, defect.1);
        for source in topology(&prefixes, layout, defect, crlf) {
            let mut alone = Handed::default();
            let mut threaded = Handed::default();
            let read_alone =
                crate::split::read_by_tables_with(&source.text, false, chunk_bytes, 1, &mut alone);
            let read_threaded = crate::split::read_by_tables_with(
                &source.text,
                false,
                chunk_bytes,
                workers,
                &mut threaded,
            );
            let others = |model: &crate::file::FileModel| {
                (model.settings.is_some(), model.location.len(), model.service.len())
            };
            prop_assert_eq!(read_alone.as_ref().map(others), read_threaded.as_ref().map(others));
            prop_assert_eq!(&alone.0, &threaded.0, "{}", source.text);
        }
    }
}
