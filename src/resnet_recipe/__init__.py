"""ResNet-50 v1.5 on MXNet and DALI: the pieces every workflow stage is made of."""
