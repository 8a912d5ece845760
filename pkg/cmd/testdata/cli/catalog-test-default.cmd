catalog test ../../deploy/catalog-tests
