catalog validate testdata/cli/in/catalog-yes.yaml
