inject -f testdata/cli/in/no-template-metadata.yaml --catalog testdata/cli/in/policies-catalog-dir --namespace-labels team=a
