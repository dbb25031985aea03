"""i2i model zoo: pure torch (+ torchvision) image-to-image GAN families behind one contract."""
