import Foundation
import Kernel

extension Provisioner {
    /// Whether the state record of export `name` names `image` as the image it serves. A
    /// server killed during a job after recording its switch comes back on the new image, so a
    /// verb whose server went away must leave that image alone (and may remove it otherwise).
    func recordNames(_ name: String, image: String) -> Bool {
        guard let recorded = state.read(name)?.image else { return false }
        return recorded == image || canonicalPath(recorded) == canonicalPath(image)
    }
}
