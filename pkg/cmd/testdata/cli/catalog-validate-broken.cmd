catalog validate testdata/cli/in/broken-catalog.yaml
