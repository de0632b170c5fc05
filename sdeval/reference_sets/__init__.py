"""Reference set definitions (JSON, read by sdeval.reference.sets); a package so that wheels ship them."""
