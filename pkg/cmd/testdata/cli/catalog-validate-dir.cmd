catalog validate testdata/cli/in/policies-catalog-dir
