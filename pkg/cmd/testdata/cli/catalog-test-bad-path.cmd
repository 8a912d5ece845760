catalog test --path webhook ../../deploy/catalog-tests
