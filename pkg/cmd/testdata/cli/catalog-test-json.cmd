catalog test -o json --path policies ../../deploy/catalog-tests/ambassador.yaml
