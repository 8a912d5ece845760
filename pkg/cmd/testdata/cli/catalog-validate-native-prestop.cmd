catalog validate testdata/cli/in/prestop-catalog.yaml
