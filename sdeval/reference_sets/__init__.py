"""Reference set definitions (JSON, read by sdeval.refsets); a package so that wheels ship them."""
