catalog test testdata/catalog-tests/failing.yaml
