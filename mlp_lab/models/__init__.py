"""The model families (MLP, CNN) and the factory that builds the network a config describes."""
