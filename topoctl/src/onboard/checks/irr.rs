//! The IRR ownership check (route objects over whois).
