inject -f testdata/cli/in/list.json -o json
