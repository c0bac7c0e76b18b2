"""The JEPA world model: transformer modules, encoders, losses (prediction, SIGReg), WorldModel."""
