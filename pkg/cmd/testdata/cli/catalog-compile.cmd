catalog compile
